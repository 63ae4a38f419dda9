"""``--since``: an ISO moment or an age counted back from now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lqs.domain.timespan import parse_since

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "back"),
    [
        ("2h", timedelta(hours=2)),
        ("7d", timedelta(days=7)),
        ("30m", timedelta(minutes=30)),
        ("30min", timedelta(minutes=30)),
        ("45s", timedelta(seconds=45)),
        ("2w", timedelta(weeks=2)),
        (" 2 H ", timedelta(hours=2)),
        ("0d", timedelta(0)),
    ],
)
def test_an_age_counts_back_from_now(text: str, back: timedelta) -> None:
    assert parse_since(text, NOW) == NOW - back


def test_an_iso_time_with_an_offset_is_taken_as_given() -> None:
    found = parse_since("2026-03-01T09:30:00+02:00", NOW)

    assert found == datetime(2026, 3, 1, 7, 30, tzinfo=UTC)
    assert found.utcoffset() == timedelta(hours=2)


def test_a_z_suffix_is_utc() -> None:
    assert parse_since("2026-03-01T09:30Z", NOW) == datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def test_a_date_or_time_without_an_offset_is_local_time() -> None:
    day = parse_since("2026-03-01", NOW)
    minute = parse_since("2026-03-01T09:30", NOW)

    assert day.tzinfo is not None
    assert day.replace(tzinfo=None) == datetime(2026, 3, 1)
    assert day.utcoffset() == datetime(2026, 3, 1).astimezone().utcoffset()
    assert minute.replace(tzinfo=None) == datetime(2026, 3, 1, 9, 30)


@pytest.mark.parametrize("text", ["", "yesterday", "2", "h", "-2h", "2y", "2h30m", "2026-13-01"])
def test_anything_else_is_refused_naming_the_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected an ISO date or time .* or an age") as caught:
        parse_since(text, NOW)

    assert repr(text) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_age_before_the_year_one_is_refused() -> None:
    with pytest.raises(ValueError, match="before the year 1"):
        parse_since("9999999w", NOW)


@given(st.datetimes(timezones=st.just(timezone(timedelta(hours=-5)))))
def test_any_aware_iso_time_round_trips(moment: datetime) -> None:
    assert parse_since(moment.isoformat(), NOW) == moment


@given(st.integers(min_value=0, max_value=100_000), st.sampled_from(["s", "m", "h", "d"]))
def test_any_age_is_never_after_now(amount: int, unit: str) -> None:
    assert parse_since(f"{amount}{unit}", NOW) <= NOW
