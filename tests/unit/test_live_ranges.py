"""The ranges of a statistics window counted from the rows rather than the rollup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from lqs.db.tenant_stats import live_ranges

H = timedelta(hours=1)
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def test_the_first_and_last_hours_are_cut_to_the_window() -> None:
    start, end = T0 + timedelta(minutes=17), T0 + 5 * H + timedelta(minutes=3)
    assert live_ranges([], start, end) == [(start, T0 + H), (T0 + 5 * H, end)]


def test_a_window_ending_on_the_hour_has_no_empty_last_range() -> None:
    assert live_ranges([], T0, T0 + 3 * H) == [(T0, T0 + H)]


def test_adjacent_stale_hours_make_one_range() -> None:
    stale = [T0 + 2 * H, T0 + 3 * H, T0 + 4 * H, T0 + 8 * H]
    assert live_ranges(stale, T0, T0 + 10 * H) == [
        (T0, T0 + H),
        (T0 + 2 * H, T0 + 5 * H),
        (T0 + 8 * H, T0 + 9 * H),
    ]


def test_past_the_limit_the_shortest_gaps_are_joined() -> None:
    # Ranges at hours 0, 2, 4, 10, 12 and 30 (gaps 1, 1, 5, 1, 17 hours).
    stale = [T0 + h * H for h in (2, 4, 10, 12, 30)]
    ranges = live_ranges(stale, T0, T0 + 40 * H, limit=3)
    assert ranges == [(T0, T0 + 5 * H), (T0 + 10 * H, T0 + 13 * H), (T0 + 30 * H, T0 + 31 * H)]


def test_the_ranges_cover_the_same_hours_whatever_the_offset_of_the_bounds() -> None:
    start = datetime(2026, 12, 1, 5, 30, tzinfo=UTC).astimezone(ZoneInfo("Asia/Kolkata"))
    assert live_ranges([], start, start + 2 * H) == [
        (start, T0 + 6 * H),
        (T0 + 7 * H, start + 2 * H),
    ]
