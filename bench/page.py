"""The part of docs/BENCHMARKS.md that ``make bench`` keeps (no benchmark imports: the
unit tests read it without the bench extra installed)."""

from __future__ import annotations

HAND_WRITTEN = "<!-- Everything below this line is written by hand; `make bench` keeps it. -->"
"""The marker in docs/BENCHMARKS.md after which the page is kept as it is: runs recorded
by hand (one-off sizes, before/after comparisons of a change) survive a full run."""


def hand_written(page: str) -> str:
    """What follows :data:`HAND_WRITTEN` in ``page``, the marker included ("" without it)."""
    at = page.find(HAND_WRITTEN)
    return page[at:] if at >= 0 else ""
