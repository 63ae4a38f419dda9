"""jsonb parameters are serialised with orjson, falling back to json where orjson refuses."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from lqs.db.connection import json_dumps


def _loads(value: bytes | str) -> object:
    return json.loads(value)


def test_plain_values_round_trip() -> None:
    value = {"a": [1, 2.5, None, True], "b": {"c": "ü"}}
    assert _loads(json_dumps(value)) == value


def test_ids_and_times_become_text() -> None:
    lead_id = uuid.UUID("6f1c0a4e-0000-4000-8000-000000000000")
    when = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    assert _loads(json_dumps({"id": lead_id, "at": when})) == {
        "id": str(lead_id),
        "at": "2026-11-25T08:00:00+00:00",
    }


def test_integers_over_64_bits_fall_back_to_json() -> None:
    assert _loads(json_dumps({"n": 10**30})) == {"n": 10**30}


def test_non_text_keys_become_text() -> None:
    assert _loads(json_dumps({1: "one"})) == {"1": "one"}
