"""The processor stage (claim, score, render, outbox) against a hand-written SQL loop, in one
process and in several, and against PgQueuer draining no-op jobs (bench/peer.py).

Each process count runs the same code: one process drains the queue in this interpreter;
more are spawned as OS processes of their own (each with its own pool, as separate
``lqs worker`` processes would be). They open their pools, wait for a common start signal
given once all are ready, and drain the same queue until it is empty; the clock runs from
the signal to the last one's finish.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import time
from collections.abc import Callable, Sequence
from functools import partial
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Literal, NamedTuple

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from bench.common import ROOT, Row, Section, Series, interleave, machine_line
from bench.peer import PGQUEUER_VERSION, pgqueuer_rate
from bench.plot import ThroughputByBatch, plot_processor
from lqs.db.pool import open_pool
from lqs.domain.default_templates import DEFAULT_TEMPLATES
from lqs.domain.templates import TemplateRenderer
from lqs.worker.processor import LeadProcessor

GOAL_BASELINE = 0.60
GOAL_PEER = 1.5
PEER_BATCH = 100
PLOT = ROOT / "docs" / "bench-processor.png"
START_TIMEOUT = 120.0
"""Seconds spawned processes may take to import LQS and open their pools."""
DRAIN_TIMEOUT = 600.0
"""Seconds a multi-process drain may take before it is abandoned as stuck."""

SQL_LOOP = "SQL loop"
LQS = "LQS processor"
IN_FLIGHT = "LQS, 2 batches in flight"
RENDERING = "rendering only"
PGQUEUER = "PgQueuer, no-op jobs"

Drain = Literal["lqs", "sql loop"]

# Every outcome sends one email, so LQS writes one outbox row per lead like the baseline.
SETTINGS = {
    "notification_email": "sales@bench.example",
    "notifications": {
        outcome: [{"channel": "email", "to": "client", "template": "lead_qualified"}]
        for outcome in ("qualified", "nurture", "disqualified")
    },
}

QUEUE_LEADS = """
INSERT INTO public.leads (client_id, email, first_name, last_name, job_title, company_name,
                          company_domain, company_size, country, consent_status, dedupe_key)
SELECT %(client)s, 'lead' || i || '@company' || (i %% 997) || '.example', 'First' || i,
       'Last' || i, (ARRAY['CEO', 'Engineer', 'VP Sales', 'Analyst'])[1 + i %% 4],
       'Company ' || (i %% 997), 'company' || (i %% 997) || '.example', (i * 7) %% 5000,
       (ARRAY['US', 'GB', 'DE', 'FR'])[1 + i %% 4], (ARRAY['granted', 'unknown'])[1 + i %% 2],
       'email:lead' || i || '@company' || (i %% 997) || '.example'
FROM generate_series(1, %(n)s) AS i
"""


def _prepare(url: str, n: int) -> str:
    with psycopg.connect(url) as conn:
        conn.execute("TRUNCATE public.leads, public.clients CASCADE")
        row = conn.execute(
            "INSERT INTO public.clients (name, slug, settings) VALUES ('Bench', 'bench', %s)"
            " RETURNING id",
            (Jsonb(SETTINGS),),
        ).fetchone()
        assert row is not None
        conn.execute(QUEUE_LEADS, {"client": row[0], "n": n})
        conn.execute("ANALYZE public.leads")
    return str(row[0])


async def _drain_lqs(pool: AsyncConnectionPool, batch_size: int, in_flight: int = 1) -> int:
    processor = LeadProcessor(pool, batch_size=batch_size, in_flight=in_flight, park_after=3)
    return await processor.drain()


BASELINE_CLAIM = """
SELECT id, client_id FROM public.leads WHERE status = 'queued'
ORDER BY received_at, id LIMIT %s FOR UPDATE SKIP LOCKED
"""


async def _drain_sql_loop(pool: AsyncConnectionPool, batch_size: int) -> int:
    """Claim a batch, mark it processed, insert one outbox row per lead, commit."""
    processed = 0
    while True:
        async with pool.connection() as conn, conn.transaction():
            cur = await conn.execute(BASELINE_CLAIM, (batch_size,))
            rows = await cur.fetchall()
            if not rows:
                return processed
            ids = [r[0] for r in rows]
            await conn.execute(
                "UPDATE public.leads SET status = 'qualified', score = 0,"
                " processed_at = now() WHERE id = ANY(%s)",
                (ids,),
            )
            await conn.execute(
                "INSERT INTO public.communications (lead_id, client_id, type, recipient)"
                " SELECT id, %s, 'email', 'sales@bench.example' FROM unnest(%s::uuid[]) AS id",
                (rows[0][1], ids),
            )
            processed += len(rows)


async def _drain(drain: Drain, pool: AsyncConnectionPool, batch_size: int) -> int:
    if drain == "lqs":
        return await _drain_lqs(pool, batch_size)
    return await _drain_sql_loop(pool, batch_size)


async def _lqs(url: str, batch_size: int, n: int, in_flight: int = 1) -> float:
    pool = await open_pool(url, min_size=1, max_size=in_flight + 1, worker=True)
    try:
        started = time.perf_counter()
        processed = await _drain_lqs(pool, batch_size, in_flight)
        elapsed = time.perf_counter() - started
    finally:
        await pool.close()
    assert processed == n, processed
    return n / elapsed


async def _baseline(url: str, batch_size: int, n: int) -> float:
    pool = await open_pool(url, min_size=1, max_size=2, worker=True)
    try:
        started = time.perf_counter()
        processed = await _drain_sql_loop(pool, batch_size)
        elapsed = time.perf_counter() - started
    finally:
        await pool.close()
    assert processed == n, processed
    return n / elapsed


class _Report(NamedTuple):
    """A spawned drain's message to the parent: ``ready`` (pool open), ``done`` (with its
    count of leads) or ``failed`` (with the error)."""

    kind: Literal["ready", "done", "failed"]
    leads: int = 0
    error: str = ""


def _spawned_drain(
    drain: Drain, url: str, batch_size: int, go: Event, reports: Queue[_Report]
) -> None:
    """A spawned process: open a pool, say so, wait for ``go``, drain, report."""
    try:
        asyncio.run(_drain_on_signal(drain, url, batch_size, go, reports))
    except BaseException as exc:
        reports.put(_Report("failed", error=f"{type(exc).__name__}: {exc}"))
        raise


async def _drain_on_signal(
    drain: Drain, url: str, batch_size: int, go: Event, reports: Queue[_Report]
) -> None:
    pool = await open_pool(url, min_size=1, max_size=2, worker=True)
    try:
        reports.put(_Report("ready"))
        if not await asyncio.to_thread(go.wait, START_TIMEOUT):
            raise RuntimeError(f"no start signal within {START_TIMEOUT:.0f} s")
        reports.put(_Report("done", await _drain(drain, pool, batch_size)))
    finally:
        await pool.close()


def _await_reports(
    reports: Queue[_Report], workers: Sequence[BaseProcess], kind: str, timeout: float
) -> list[_Report]:
    """One ``kind`` report per worker.

    Raises:
        RuntimeError: a worker failed, died without a word, or ``timeout`` passed.
    """
    received: list[_Report] = []
    deadline = time.monotonic() + timeout
    while len(received) < len(workers):
        try:
            report = reports.get(timeout=0.5)
        except queue.Empty:
            dead = [w.exitcode for w in workers if w.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"a drain process died (exit codes {dead})") from None
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{len(workers) - len(received)} drain process(es) not {kind}"
                    f" after {timeout:.0f} s"
                ) from None
            continue
        if report.kind == "failed":
            raise RuntimeError(f"a drain process failed: {report.error}")
        assert report.kind == kind, report
        received.append(report)
    return received


def _processes(url: str, drain: Drain, batch_size: int, n: int, processes: int) -> float:
    """Leads per second of ``processes`` spawned processes draining one queue together,
    from the moment all have their pools open to the moment the last one is done."""
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    reports: Queue[_Report] = context.Queue()
    workers = [
        context.Process(
            target=_spawned_drain, args=(drain, url, batch_size, go, reports), daemon=True
        )
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        _await_reports(reports, workers, "ready", START_TIMEOUT)
        started = time.perf_counter()
        go.set()
        done = _await_reports(reports, workers, "done", DRAIN_TIMEOUT)
        elapsed = time.perf_counter() - started
    except BaseException:
        for worker in workers:
            worker.terminate()
        raise
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()
                worker.join()
    processed = sum(report.leads for report in done)
    assert processed == n, (processed, done)
    return n / elapsed


def _measure(url: str, n: int, drain: Drain, batch_size: int, processes: int) -> float:
    _prepare(url, n)
    if processes > 1:
        return _processes(url, drain, batch_size, n, processes)
    if drain == "lqs":
        return asyncio.run(_lqs(url, batch_size, n))
    return asyncio.run(_baseline(url, batch_size, n))


def _render_only(n: int) -> float:
    """Renders per second of the default notification, as the processor renders it, with
    no database at all: what rendering alone costs next to the whole SQL loop."""
    renderer = TemplateRenderer()
    template = DEFAULT_TEMPLATES["lead_qualified"]
    lead = {
        "id": "6f1c0a4e-0000-4000-8000-000000000000", "email": "lead1@company1.example",
        "phone": None, "first_name": "First1", "last_name": "Last1", "job_title": "CEO",
        "company_name": "Company 1", "company_domain": "company1.example",
        "company_size": 7, "industry": None, "country": "US", "source": None,
        "utm_source": None, "utm_medium": None, "utm_campaign": None, "utm_term": None,
        "utm_content": None, "custom": {}, "consent_status": "granted",
        "received_at": "2026-11-25T08:00:00+00:00",
    }  # fmt: skip
    breakdown = [
        {"rule_id": f"rule_{i}", "rule_version": 1, "field": "job_title", "value": "CEO",
         "points": 10, "reason": "senior job title"}
        for i in range(3)
    ]  # fmt: skip
    variables = {"lead": lead, "client": {"name": "Bench", "slug": "bench"}, "score": 30,
                 "grade": "B", "outcome": "nurture", "breakdown": breakdown}  # fmt: skip
    started = time.perf_counter()
    for _ in range(n):
        renderer.render(template, variables)
    return n / (time.perf_counter() - started)


def _measure_in_flight(url: str, n: int) -> float:
    _prepare(url, n)
    return asyncio.run(_lqs(url, 100, n, in_flight=2))


def _label(system: str, processes: int) -> str:
    return f"{system}, {processes} process{'es' if processes > 1 else ''}"


def _series_name(system: str, processes: int) -> str:
    return system if processes == 1 else _label(system, processes)


def _stage(batch_size: int, processes: int) -> str:
    # The one-process rows keep the names they had before there were others.
    more = "" if processes == 1 else f", {processes} processes"
    return f"processor: claim, score, render, outbox (batch {batch_size}{more})"


def _rows(
    series: dict[str, Series], batch_size: int, processes: tuple[int, ...], peer: bool
) -> list[Row]:
    rows = [
        Row(
            _stage(batch_size, count),
            series[_series_name(LQS, count)],
            series[_series_name(SQL_LOOP, count)],
            "leads/s",
            GOAL_BASELINE,
        )
        for count in processes
    ]
    if batch_size == 100 and 1 in processes:
        rows.append(
            Row(
                "processor, 2 batches in flight (the worker's default; batch 100)",
                series[IN_FLIGHT],
                series[SQL_LOOP],
                "leads/s",
                GOAL_BASELINE,
            )
        )
        rows.append(
            Row(
                "rendering alone: default notification, no database (context)",
                series[RENDERING],
                series[SQL_LOOP],
                "per s",
            )
        )
    if peer and batch_size == PEER_BATCH and 1 in processes:
        rows.append(
            Row(
                f"Processor vs PgQueuer (batch {PEER_BATCH}, 1 process)",
                series[LQS],
                series[PGQUEUER],
                "per s",
                GOAL_PEER,
            )
        )
    return rows


def _curves(
    medians: dict[str, dict[int, float]], processes: tuple[int, ...]
) -> dict[str, dict[int, float]]:
    """What the plot shows: LQS and the SQL loop with the fewest processes, and PgQueuer."""
    count = min(processes)
    curves = {
        _label(system, count): medians[_series_name(system, count)] for system in (LQS, SQL_LOOP)
    }
    if PGQUEUER in medians:
        curves[_label(PGQUEUER, 1)] = medians[PGQUEUER]
    return curves


def _medians_table(
    medians: dict[str, dict[int, float]],
    batch_sizes: tuple[int, ...],
    processes: tuple[int, ...],
    n: int,
    repeats: int,
) -> list[str]:
    columns = [
        (_label(system, count), _series_name(system, count))
        for count in processes
        for system in (LQS, SQL_LOOP)
    ]
    if PGQUEUER in medians:
        columns.append((_label(PGQUEUER, 1), PGQUEUER))
    return [
        f"Medians by batch size, {n:,} leads (PgQueuer: no-op jobs) per run, {repeats} "
        "interleaved repeats; leads/s (PgQueuer: jobs/s):",
        "",
        "| batch | " + " | ".join(name for name, _ in columns) + " |",
        "| ---: |" + " ---: |" * len(columns),
        *(
            f"| {batch_size:,} | "
            + " | ".join(f"{medians[key][batch_size]:,.0f}" for _, key in columns)
            + " |"
            for batch_size in batch_sizes
        ),
        "",
        f"- *PgQueuer* {PGQUEUER_VERSION} (`QueueManager` over `AsyncpgDriver`, "
        "`run(batch_size=…, mode=drain)`) runs an entrypoint that does nothing: each job is "
        "claimed with `FOR UPDATE SKIP LOCKED`, run as an asyncio task and moved to "
        "PgQueuer's log table. Its jobs are enqueued before the clock starts.",
        "- *2 processes*: two spawned OS processes, each with its own pool, start draining the "
        "same queue together once both have their pools open; the clock stops when the last "
        "one is done.",
    ]


def run(
    url: str,
    n: int,
    repeats: int,
    batch_sizes: tuple[int, ...] = (100,),
    *,
    processes: tuple[int, ...] = (1, 2),
    peer: bool = True,
    plot: Path | None = PLOT,
) -> Section:
    """The processor's rows (LQS against the SQL loop at each batch size and process
    count; at batch 100 also two batches in flight, rendering alone and, with ``peer``,
    LQS against PgQueuer), a table of the medians, and the plot, written to ``plot``."""
    section = Section("Processor: claim, score, render, outbox")
    medians: dict[str, dict[int, float]] = {}
    for batch_size in batch_sizes:
        print(f"processor: {n:,} leads, batch {batch_size}, {repeats} interleaved repeats")
        configs: dict[str, Callable[[], float]] = {}
        for count in processes:
            configs[_series_name(SQL_LOOP, count)] = partial(
                _measure, url, n, "sql loop", batch_size, count
            )
            configs[_series_name(LQS, count)] = partial(_measure, url, n, "lqs", batch_size, count)
        if batch_size == 100 and 1 in processes:
            configs[IN_FLIGHT] = partial(_measure_in_flight, url, n)
            configs[RENDERING] = partial(_render_only, min(n, 5_000))
        if peer:
            configs[PGQUEUER] = partial(pgqueuer_rate, url, n, batch_size)
        series = interleave(repeats, configs)
        for name, figures in series.items():
            medians.setdefault(name, {})[batch_size] = figures.median
        section.rows += _rows(series, batch_size, processes, peer)

    section.markdown += _medians_table(medians, batch_sizes, processes, n, repeats)
    if plot is not None:
        plot_processor(
            ThroughputByBatch(
                title=f"Processor throughput by batch size ({n:,} leads or jobs, "
                f"median of {repeats})",
                machine=machine_line(url),
                unit="leads per second (PgQueuer: no-op jobs)",
                curves=_curves(medians, processes),
            ),
            plot,
        )
        section.markdown += ["", f"![throughput by batch size]({plot.name})"]
    return section
