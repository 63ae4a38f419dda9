"""Figures for docs/: PNGs drawn with matplotlib's Agg canvas (no display, no pyplot state)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter


@dataclass(frozen=True)
class ThroughputByBatch:
    """Median rates by batch size, one curve per system, and what the figure says of them."""

    title: str
    machine: str
    """The machine line of the report (cores, PostgreSQL and Python versions)."""
    unit: str
    curves: Mapping[str, Mapping[int, float]]
    """Rate by batch size, by the name shown in the legend."""


_STYLES = ("o-", "s--", "^:", "D-.", "v-")


def plot_processor(section_data: ThroughputByBatch, path: Path) -> None:
    """Draw throughput against batch size (log scale), one line per curve, into ``path``."""
    figure = Figure(figsize=(7.5, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for (name, points), style in zip(section_data.curves.items(), _STYLES, strict=False):
        batch_sizes = sorted(points)
        axes.plot(batch_sizes, [points[b] for b in batch_sizes], style, label=name)
    batch_sizes = sorted({b for points in section_data.curves.values() for b in points})
    axes.set_xscale("log")
    axes.set_xticks(batch_sizes, [f"{b:,}" for b in batch_sizes])
    axes.minorticks_off()
    axes.set_ylim(bottom=0)
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    axes.set_xlabel("batch size (log scale)")
    axes.set_ylabel(section_data.unit)
    axes.grid(True, alpha=0.3)
    axes.legend()
    axes.set_title(f"{section_data.title}\n{section_data.machine}", fontsize="medium")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
