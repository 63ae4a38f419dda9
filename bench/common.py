"""Shared benchmark machinery: a scratch database, interleaved repeats, the report table.

The machine is shared and noisy, so every figure is reported next to a baseline measured
in the same run, each configuration repeated (A B A B ...) and summarised as the median
and min-max of its repeats.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg
from psycopg import conninfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from lqs.db.connection import connect  # noqa: E402
from lqs.db.embedded import start_embedded  # noqa: E402
from lqs.db.migrate import migrate  # noqa: E402


@contextmanager
def server_url() -> Iterator[str]:
    """LQS_BENCH_DATABASE_URL (a superuser URL), or an embedded server under .lqs/bench."""
    configured = os.environ.get("LQS_BENCH_DATABASE_URL")
    if configured:
        yield configured
        return
    server = start_embedded(ROOT / ".lqs" / "bench")
    try:
        yield server.url
    finally:
        server.stop()


@contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    """A freshly migrated database, dropped afterwards."""
    name = f"lqs_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"'.encode())
    url = conninfo.make_conninfo(admin_url, dbname=name)
    try:
        with connect(url) as conn:
            migrate(conn)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def server_version(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


@dataclass
class Series:
    """Repeated measurements of one configuration (a rate; a latency in an ``at_most`` row)."""

    name: str
    values: list[float] = field(default_factory=list)
    worked_out: bool = False
    """A figure computed rather than measured (a theoretical ceiling): it has no range."""
    decimals: int = 0
    """Decimal places shown (a latency in ms wants one)."""

    @classmethod
    def computed(cls, name: str, value: float) -> Series:
        """A baseline worked out rather than measured, such as ``concurrency / latency``."""
        return cls(name, [value], worked_out=True)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def span(self) -> str:
        d = self.decimals
        return f"{min(self.values):,.{d}f}–{max(self.values):,.{d}f}"

    def describe(self, unit: str) -> str:
        """The median with its unit, and the min-max of the repeats unless worked out."""
        text = f"{self.median:,.{self.decimals}f} {unit}"
        return text if self.worked_out else f"{text} ({self.span()})"


def interleave(repeats: int, configs: dict[str, Callable[[], float]]) -> dict[str, Series]:
    """Run each configuration ``repeats`` times, interleaved, and collect the results."""
    series = {name: Series(name) for name in configs}
    for _ in range(repeats):
        for name, run in configs.items():
            value = run()
            series[name].values.append(value)
            print(f"  {name}: {value:,.0f}", flush=True)
    return series


@dataclass
class Row:
    """One line of the report: a figure against its baseline, and the goal.

    By default the goal is a least ratio figure / baseline (rates: higher is better).
    ``at_most``: the ratio may be at most ``goal`` (latencies: lower is better). Without a
    baseline, ``goal`` is an absolute figure in ``unit`` that the median must reach. A row
    whose figure could not be measured is ``skipped``, the reason shown in its place.
    """

    stage: str
    figure: Series
    baseline: Series | None
    unit: str
    goal: float | None = None
    at_most: bool = False
    skipped: str | None = None

    @property
    def ratio(self) -> float:
        assert self.baseline is not None, "a row without a baseline has no ratio"
        return self.figure.median / self.baseline.median

    @property
    def met(self) -> bool | None:
        """Whether the goal is met; None without a goal or when skipped."""
        if self.goal is None or self.skipped is not None:
            return None
        if self.baseline is None:
            if self.at_most:
                return self.figure.median <= self.goal
            return self.figure.median >= self.goal
        return self.ratio <= self.goal if self.at_most else self.ratio >= self.goal

    def markdown(self) -> str:
        if self.skipped is not None:
            baseline = "" if self.baseline is None else self.baseline.name
            goal = "" if self.goal is None else f"≥ {self.goal:.0%}"
            goal = f"≤ {self.goal:.1f}×" if self.at_most and self.goal is not None else goal
            return f"| {self.stage} | skipped: {self.skipped} | {baseline} | — | {goal} |"
        verdict = "" if self.met is None else (" ✅" if self.met else " ❌")
        if self.baseline is None:
            bound = "≤" if self.at_most else "≥"
            goal = "" if self.goal is None else f"{bound} {self.goal:,g} {self.unit}"
            return (
                f"| {self.stage} | {self.figure.describe(self.unit)} "
                f"| none (an absolute goal) | —{verdict} | {goal} |"
            )
        if self.at_most:
            goal = "" if self.goal is None else f"≤ {self.goal:.1f}×"
            ratio = f"{self.ratio:.2f}×"
        else:
            goal = "" if self.goal is None else f"≥ {self.goal:.0%}"
            ratio = f"{self.ratio:.0%}"
        return (
            f"| {self.stage} | {self.figure.describe(self.unit)} "
            f"| {self.baseline.name}: {self.baseline.describe(self.unit)} "
            f"| **{ratio}**{verdict} | {goal} |"
        )


def backend_cpu_seconds(url: str) -> dict[int, float] | None:
    """CPU seconds of each backend connected to the database (but this query's), or None
    if the server is not on this host."""
    with psycopg.connect(url) as conn:
        pids = conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    seconds = {}
    for (pid,) in pids:
        try:
            process = psutil.Process(pid)
            if "postgres" not in process.name():
                return None
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        except psutil.Error:
            return None
        seconds[pid] = times.user + times.system
    return seconds


def backend_cpu_used(
    before: dict[int, float] | None, after: dict[int, float] | None
) -> float | None:
    """CPU seconds the backends used between two :func:`backend_cpu_seconds` readings, or
    None if either is None. The pools' connections outlive a run; one opened during it
    starts from 0."""
    if before is None or after is None:
        return None
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` and of its living children, or 0
    if it has exited."""
    try:
        process = psutil.Process(pid)
        family = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for member in family:
        try:
            times = member.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def machine_line(url: str) -> str:
    cores = os.cpu_count()
    return f"{cores} cores, PostgreSQL {server_version(url)}, Python {sys.version.split()[0]}"


def free_port() -> int:
    """A local TCP port nothing listens on (for a server the benchmark starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_lqs(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LQS_")}
    env["LQS_DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "lqs", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )


@dataclass
class Section:
    """A stage's part of docs/BENCHMARKS.md: its rows in the main table (figure against
    baseline), and any further Markdown (its own table, notes) printed under a heading."""

    title: str
    rows: list[Row] = field(default_factory=list)
    markdown: list[str] = field(default_factory=list)
