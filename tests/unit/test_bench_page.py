"""``make bench`` rewrites docs/BENCHMARKS.md but keeps the part written by hand."""

from __future__ import annotations

from bench.page import HAND_WRITTEN, hand_written


def test_the_hand_written_part_is_kept_marker_included() -> None:
    page = f"# Benchmarks\n\n| generated |\n\n{HAND_WRITTEN}\n\n## A run by hand\n\n1 s\n"
    assert hand_written(page) == f"{HAND_WRITTEN}\n\n## A run by hand\n\n1 s\n"


def test_a_page_without_the_marker_keeps_nothing() -> None:
    assert hand_written("# Benchmarks\n\n## Only generated\n") == ""
