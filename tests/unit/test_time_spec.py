"""``--since``: a time as typed, or an age counted back from now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from lqs.domain.time_spec import parse_since

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "ago"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("30min", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("2H", timedelta(hours=2)),
        (" 7d ", timedelta(days=7)),
        ("7 d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("0h", timedelta(0)),
    ],
)
def test_an_age_counts_back_from_now(value: str, ago: timedelta) -> None:
    assert parse_since(value, NOW) == NOW - ago


def test_a_time_with_an_offset_is_taken_as_given() -> None:
    assert parse_since("2026-03-01T09:30+02:00", NOW) == datetime(
        2026, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=2))
    )
    assert parse_since("2026-03-01T09:30:00Z", NOW) == datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def test_a_date_or_time_without_an_offset_is_local_time() -> None:
    midnight = parse_since("2026-03-01", NOW)
    assert midnight.tzinfo is not None
    assert midnight == datetime(2026, 3, 1).astimezone()
    assert parse_since("2026-03-01T09:30", NOW) == datetime(2026, 3, 1, 9, 30).astimezone()


@pytest.mark.parametrize(
    "value", ["", "yesterday", "2h ago", "-2h", "2y", "1.5h", "2026-13-01", "h", "2026/03/01"]
)
def test_anything_else_is_refused_naming_the_forms(value: str) -> None:
    with pytest.raises(ValueError, match=r"--since must be a time \(2026-03-01.*or an age \(30m"):
        parse_since(value, NOW)


def test_an_age_reaching_before_year_one_is_refused_not_an_overflow() -> None:
    with pytest.raises(ValueError, match="before the year 1"):
        parse_since("999999w", NOW)
