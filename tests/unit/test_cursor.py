"""Keyset cursors: what one encodes comes back, and nothing else is taken."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lqs.domain.cursor import (
    MAX_CURSOR_LENGTH,
    Cursor,
    InvalidCursor,
    decode_cursor,
    encode_cursor,
)

_ID = UUID("01234567-89ab-cdef-0123-456789abcdef")
_moments = st.datetimes(
    min_value=datetime(1970, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5, minutes=-30))]),
)


def _token(document: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


@given(moment=_moments, last_id=st.uuids())
def test_a_moment_cursor_round_trips_to_the_microsecond(moment: datetime, last_id: UUID) -> None:
    cursor = Cursor("received", moment, last_id)
    decoded = decode_cursor(encode_cursor(cursor), "received", datetime)
    assert decoded == cursor
    assert decoded.key.utcoffset() == moment.utcoffset()  # type: ignore[union-attr]


@given(score=st.integers(min_value=-(2**31), max_value=2**31 - 1), last_id=st.uuids())
def test_a_score_cursor_round_trips(score: int, last_id: UUID) -> None:
    cursor = Cursor("score", score, last_id)
    assert decode_cursor(encode_cursor(cursor), "score", int) == cursor


@given(moment=_moments, last_id=st.uuids())
def test_a_cursor_is_url_safe_and_short(moment: datetime, last_id: UUID) -> None:
    text = encode_cursor(Cursor("received", moment, last_id))
    assert len(text) < MAX_CURSOR_LENGTH
    assert set(text) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@given(st.text(max_size=80))
def test_garbage_is_refused_with_invalid_cursor_never_another_error(text: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(text, "received", datetime)


@given(st.binary(max_size=120))
def test_arbitrary_bytes_in_base64_are_refused(raw: bytes) -> None:
    text = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    with pytest.raises(InvalidCursor):
        decode_cursor(text, "score", int)


@pytest.mark.parametrize(
    "document",
    [
        [],
        "x",
        {"v": 2, "s": "received", "k": "2026-01-01T00:00:00+00:00", "i": str(_ID)},
        {"v": 1, "s": "score", "k": "2026-01-01T00:00:00+00:00", "i": str(_ID)},
        {"v": 1, "s": "received", "k": "2026-01-01T00:00:00", "i": str(_ID)},
        {"v": 1, "s": "received", "k": "yesterday", "i": str(_ID)},
        {"v": 1, "s": "received", "k": 5, "i": str(_ID)},
        {"v": 1, "s": "received", "k": "2026-01-01T00:00:00+00:00", "i": "not-a-uuid"},
        {"v": 1, "s": "received", "k": "2026-01-01T00:00:00+00:00", "i": 7},
        {"v": 1, "s": "received", "k": "2026-01-01T00:00:00+00:00"},
    ],
    ids=[
        "array", "string", "other-version", "other-sort", "naive-moment", "not-a-moment",
        "number-for-moment", "bad-id", "numeric-id", "no-id",
    ],
)  # fmt: skip
def test_a_well_formed_but_foreign_cursor_is_refused(document: object) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(_token(document), "received", datetime)


@pytest.mark.parametrize("key", [True, 1.5, "7", 2**31, -(2**31) - 1, None])
def test_a_score_cursor_needs_an_integer_key(key: object) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(_token({"v": 1, "s": "score", "k": key, "i": str(_ID)}), "score", int)


@pytest.mark.parametrize("text", ["", "a" * (MAX_CURSOR_LENGTH + 1), "!!!", "====", "e30"])
def test_empty_overlong_or_malformed_text_is_refused(text: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(text, "received", datetime)
