"""A client's retention setting: each age optional, a positive whole number of days, rows
kept at least as long as their content; bad values refused naming the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from lqs.domain.clients import parse_client_settings
from lqs.domain.retention import RetentionSettings, cutoffs, leads_per_batch


@pytest.mark.parametrize(
    ("retention", "field"),
    [
        ({"content_days": 0}, "retention.content_days"),
        ({"rows_days": -3}, "retention.rows_days"),
        ({"leads_days": "30"}, "retention.leads_days"),
        ({"leads_days": 1.5}, "retention.leads_days"),
        ({"content_days": 10**9}, "retention.content_days"),
        ({"keep_days": 3}, "retention.keep_days"),
        ({"content_days": 30, "rows_days": 7}, "retention"),
    ],
)
def test_bad_retention_settings_are_refused_naming_the_field(
    retention: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        parse_client_settings({"retention": retention})
    where = [".".join(str(p) for p in e["loc"]) for e in raised.value.errors()]
    assert where == [field]


def test_rows_may_be_kept_as_long_as_their_content() -> None:
    settings = parse_client_settings({"retention": {"content_days": 30, "rows_days": 30}})
    assert settings.retention == RetentionSettings(content_days=30, rows_days=30)


def test_no_setting_keeps_everything() -> None:
    assert parse_client_settings({}).retention.is_empty


def test_cutoffs_are_the_ages_before_now() -> None:
    now = datetime(2026, 12, 7, tzinfo=UTC)
    due = cutoffs(RetentionSettings(content_days=30, leads_days=365), now)
    assert due.content_before == now - timedelta(days=30)
    assert due.rows_before is None
    assert due.leads_before == now - timedelta(days=365)


def test_the_next_lead_batch_is_sized_by_the_last_ones_messages() -> None:
    assert leads_per_batch(10_000, 1_000, 4_000) == 2_000
    assert leads_per_batch(10_000, 1_000, 0) == 10_000
    assert leads_per_batch(10, 1, 100) == 1  # never less than one lead
