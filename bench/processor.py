"""The processor stage (claim, score, render, outbox) against a hand-written SQL loop, in one
process and in several, and against PgQueuer draining no-op jobs (bench/peer.py).

At batch 100 in one process it is also set against baselines doing the same work: the
same-writes SQL floor (the rows LQS writes, worked out before the clock starts, written
by the fastest plain SQL found), peers running one job per lead with LQS's own scoring and
rendering (PgQueuer, bench/peer.py; Celery, bench/celery_peer.py), and LQS's sandboxed
renderer against plain Jinja2 (bench/rendering.py).

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
from contextlib import ExitStack
from functools import partial
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Literal, NamedTuple
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from bench.celery_peer import CELERY_VERSION, CeleryPeer, CeleryUnavailable
from bench.common import ROOT, Row, Section, Series, interleave, machine_line
from bench.peer import (
    PGQUEUER_VERSION,
    SAME_WORK_POOL,
    ClientConfig,
    LeadRows,
    lead_rows,
    lead_work,
    pgqueuer_rate,
    pgqueuer_same_work_rate,
)
from bench.plot import ThroughputByBatch, plot_processor
from bench.rendering import lqs_render_us, plain_render_us
from lqs.db.clients import Client
from lqs.db.leads import ClaimedLead
from lqs.db.pool import open_pool
from lqs.domain.default_templates import DEFAULT_TEMPLATES
from lqs.domain.templates import TemplateRenderer
from lqs.worker.processor import LeadProcessor

# The SQL loop and PgQueuer's no-op jobs do far less work than LQS: their rows are
# context (no goal). The goals are against the same-writes floor and the same-work peers.
GOAL_SAME_WRITES = 0.85
GOAL_PGQUEUER_SAME_WORK = 3.0
GOAL_CELERY_SAME_WORK = 5.0
GOAL_RENDERING = 1.3
"""LQS's sandboxed render time over plain Jinja2's: at most this."""
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
SAME_WRITES = "same-writes SQL floor"
PGQUEUER_SAME_WORK = "PgQueuer, same work"
CELERY_SAME_WORK = "Celery, same work"
SANDBOXED = "LQS sandboxed render"
PLAIN_JINJA = "plain Jinja2 render"

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


def _same_writes(url: str) -> dict[UUID, LeadRows]:
    """What LQS writes for every queued lead, worked out with its own scoring and
    rendering (bench/peer.py :func:`~bench.peer.lead_work`) before the clock starts."""
    with psycopg.connect(url) as conn:
        clients = conn.execute("SELECT id, name, slug, settings FROM public.clients").fetchall()
        configs = {row[0]: ClientConfig.parse(Client(*row)) for row in clients}
        with conn.cursor(row_factory=dict_row) as cur:
            leads = cur.execute("SELECT * FROM public.leads WHERE status = 'queued'").fetchall()
    renderer = TemplateRenderer()
    rows = {}
    for row in leads:
        lead = ClaimedLead.from_row(row)
        rows[lead.id] = lead_rows(*lead_work(lead, configs[lead.client_id], renderer))
    return rows


FLOOR_CLAIM = """
SELECT id FROM public.leads WHERE status = 'queued'
ORDER BY received_at, id LIMIT %s FOR UPDATE SKIP LOCKED
"""
FLOOR_OUTCOMES = """
UPDATE public.leads AS l
SET status = o.status, score = o.score, grade = o.grade, score_breakdown = o.breakdown::jsonb,
    error_message = NULL, processed_at = now()
FROM unnest(%s::text[], %s::int[], %s::text[], %s::text[], %s::uuid[])
     AS o(status, score, grade, breakdown, id)
WHERE l.id = o.id
"""
FLOOR_COMMUNICATIONS = """
COPY public.communications (id, lead_id, client_id, type, recipient, subject, content, status,
    template_id, template_variables, priority, campaign_id, consent_status, compliance_notes,
    error_message)
FROM STDIN
"""
FLOOR_DELIVERIES = (
    "COPY public.delivery_queue (communication_id, client_id, priority, to_lead) FROM STDIN"
)


async def _write_same_rows(conn: psycopg.AsyncConnection, batch: list[LeadRows]) -> None:
    """The outcomes in one ``unnest`` statement, the new rows by ``COPY`` (as LQS does):
    faster here than ``unnest`` for every table or a pipelined ``executemany``."""
    outcomes = [list(column) for column in zip(*(b.lead for b in batch), strict=True)]
    await conn.execute(FLOOR_OUTCOMES, outcomes)
    async with conn.cursor() as cur:
        async with cur.copy(FLOOR_COMMUNICATIONS) as copy:
            for b in batch:
                for row in b.communications:
                    await copy.write_row(row)
        async with cur.copy(FLOOR_DELIVERIES) as copy:
            for b in batch:
                for row in b.queue:
                    await copy.write_row(row)


async def _drain_same_writes(
    pool: AsyncConnectionPool, batch_size: int, rows: dict[UUID, LeadRows]
) -> int:
    """Claim a batch as LQS does, write the rows LQS writes for it, commit."""
    processed = 0
    while True:
        async with pool.connection() as conn, conn.transaction():
            cur = await conn.execute(FLOOR_CLAIM, (batch_size,))
            claimed = await cur.fetchall()
            if not claimed:
                return processed
            await _write_same_rows(conn, [rows[lead_id] for (lead_id,) in claimed])
            processed += len(claimed)


async def _floor(url: str, batch_size: int, rows: dict[UUID, LeadRows]) -> float:
    pool = await open_pool(url, min_size=1, max_size=2, worker=True)
    try:
        started = time.perf_counter()
        processed = await _drain_same_writes(pool, batch_size, rows)
        elapsed = time.perf_counter() - started
    finally:
        await pool.close()
    assert processed == len(rows), processed
    return processed / elapsed


def _measure_same_writes(url: str, n: int, batch_size: int) -> float:
    _prepare(url, n)
    return asyncio.run(_floor(url, batch_size, _same_writes(url)))


def _measure_pgqueuer_same_work(url: str, n: int, batch_size: int) -> float:
    _prepare(url, n)
    return pgqueuer_same_work_rate(url, batch_size)


def _measure_celery_same_work(url: str, n: int, peer: CeleryPeer) -> float:
    _prepare(url, n)
    return peer.rate(url)


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
            )
        )
    return rows


def _same_work_rows(series: dict[str, Series], peer: bool, celery_skipped: str | None) -> list[Row]:
    """LQS (batch 100, 1 process) against the baselines doing the same work, and its
    renderer against plain Jinja2."""
    rows = [
        Row(
            f"processor vs same-writes SQL floor (batch {PEER_BATCH}, 1 process)",
            series[LQS],
            series[SAME_WRITES],
            "leads/s",
            GOAL_SAME_WRITES,
        )
    ]
    if peer:
        rows.append(
            Row(
                f"processor vs PgQueuer, one same-work job per lead (batch {PEER_BATCH}, "
                "1 process)",
                series[LQS],
                series[PGQUEUER_SAME_WORK],
                "leads/s",
                GOAL_PGQUEUER_SAME_WORK,
            )
        )
        rows.append(
            Row(
                "processor vs Celery, one same-work task per lead (1 solo worker)",
                series[LQS],
                series.get(CELERY_SAME_WORK, Series(CELERY_SAME_WORK)),
                "leads/s",
                GOAL_CELERY_SAME_WORK,
                skipped=celery_skipped,
            )
        )
    rows.append(
        Row(
            "rendering: LQS sandbox vs plain Jinja2, time per render (lower is better)",
            series[SANDBOXED],
            series[PLAIN_JINJA],
            "µs",
            GOAL_RENDERING,
            at_most=True,
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
    peer_leads: int | None = None,
    plot: Path | None = PLOT,
) -> Section:
    """The processor's rows (LQS against the SQL loop at each batch size and process
    count; at batch 100 also two batches in flight, rendering alone and, with ``peer``,
    LQS against PgQueuer, against the same-writes SQL floor and, with ``peer``, against
    PgQueuer and Celery running a job per lead on ``peer_leads`` leads (default ``n``)),
    a table of the medians, and the plot, written to ``plot``."""
    section = Section("Processor: claim, score, render, outbox")
    medians: dict[str, dict[int, float]] = {}
    same_work = PEER_BATCH in batch_sizes and 1 in processes
    peer_n = n if peer_leads is None else min(n, peer_leads)
    with ExitStack() as stack:
        celery: CeleryPeer | None = None
        celery_skipped: str | None = None
        if peer and same_work:
            try:
                celery = CeleryPeer.start()
            except CeleryUnavailable as exc:
                celery_skipped = str(exc)
                print(f"  {CELERY_SAME_WORK} skipped: {celery_skipped}", flush=True)
            else:
                stack.callback(celery.close)
        for batch_size in batch_sizes:
            print(f"processor: {n:,} leads, batch {batch_size}, {repeats} interleaved repeats")
            configs: dict[str, Callable[[], float]] = {}
            for count in processes:
                configs[_series_name(SQL_LOOP, count)] = partial(
                    _measure, url, n, "sql loop", batch_size, count
                )
                configs[_series_name(LQS, count)] = partial(
                    _measure, url, n, "lqs", batch_size, count
                )
            if batch_size == 100 and 1 in processes:
                configs[IN_FLIGHT] = partial(_measure_in_flight, url, n)
                configs[RENDERING] = partial(_render_only, min(n, 5_000))
            if peer:
                configs[PGQUEUER] = partial(pgqueuer_rate, url, n, batch_size)
            if same_work and batch_size == PEER_BATCH:
                configs[SAME_WRITES] = partial(_measure_same_writes, url, n, batch_size)
                if peer:
                    configs[PGQUEUER_SAME_WORK] = partial(
                        _measure_pgqueuer_same_work, url, peer_n, batch_size
                    )
                if celery is not None:
                    configs[CELERY_SAME_WORK] = partial(
                        _measure_celery_same_work, url, peer_n, celery
                    )
                configs[SANDBOXED] = lqs_render_us
                configs[PLAIN_JINJA] = plain_render_us
            series = interleave(repeats, configs)
            for name, figures in series.items():
                medians.setdefault(name, {})[batch_size] = figures.median
            section.rows += _rows(series, batch_size, processes, peer)
            if same_work and batch_size == PEER_BATCH:
                section.rows += _same_work_rows(series, peer, celery_skipped)

    section.markdown += _medians_table(medians, batch_sizes, processes, n, repeats)
    if same_work:
        section.markdown += _same_work_notes(medians, peer, celery_skipped, n, peer_n)
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


def _same_work_notes(
    medians: dict[str, dict[int, float]],
    peer: bool,
    celery_skipped: str | None,
    n: int,
    peer_n: int,
) -> list[str]:
    def median(name: str) -> str:
        return f"{medians[name][PEER_BATCH]:,.0f}" if name in medians else "—"

    lines = [
        "",
        f"Baselines doing the same work (batch {PEER_BATCH}, 1 process; medians; {n:,} "
        f"leads per run, the peers {peer_n:,}): LQS "
        f"{median(LQS)} leads/s, same-writes SQL floor {median(SAME_WRITES)}"
        + (
            f", PgQueuer same work {median(PGQUEUER_SAME_WORK)}, Celery same work "
            f"{median(CELERY_SAME_WORK) if celery_skipped is None else 'skipped'}"
            if peer
            else ""
        )
        + f" leads/s; rendering {median(SANDBOXED)} µs (LQS sandbox) against "
        f"{median(PLAIN_JINJA)} µs (plain Jinja2) per render.",
        "",
        "- *same-writes SQL floor*: claims the same leads in batches of the same size with "
        "`FOR UPDATE SKIP LOCKED` (ids only) and writes exactly the rows LQS writes: each "
        "lead's status, score, grade, `score_breakdown` and `processed_at`, one "
        "`communications` row per message with its subject, content and "
        "`template_variables`, and its `delivery_queue` row, in the same tables (same "
        "indexes, foreign keys and triggers), one transaction per batch. Every value "
        "(rendered content, jsonb text, ids) is worked out before the clock starts by "
        "LQS's own scoring and rendering on the same leads. The leads' update is one "
        "`unnest` statement and the new rows go by `COPY`, the fastest measured here: "
        "`unnest` for all three tables and pipelined `executemany` were slower. It sends "
        "no NOTIFY (LQS does, one per batch) and reads no clients, templates, "
        "suppressions or consent history.",
    ]
    if peer:
        lines += [
            f"- *PgQueuer, same work*: PgQueuer {PGQUEUER_VERSION}, one job per lead "
            "(its id as the payload, enqueued before the clock starts); each job locks its "
            "lead, scores, plans and renders it with LQS's own functions (client settings "
            "parsed once, beforehand) and writes the same rows (one UPDATE, one INSERT per "
            "table, psycopg) in one transaction, on a pool of "
            f"{SAME_WORK_POOL} psycopg connections; `run(batch_size={PEER_BATCH})`.",
            f"- *Celery, same work*: Celery {CELERY_VERSION} with a Redis broker (a "
            "redis-server the bench starts on a free loopback port), one worker process "
            "(`--pool=solo`, concurrency 1) running the same job body as a task on one "
            "psycopg connection; tasks are sent before the clock starts, which runs from "
            "the order to consume them to the last task's end (each task counts itself "
            "with one Redis `INCR`)."
            + ("" if celery_skipped is None else f" Skipped in this run: {celery_skipped}."),
        ]
    lines += [
        "- *rendering*: every shipped template (subject and body) with the variables of a "
        "qualified bench lead, no database: LQS's `TemplateRenderer` (sandbox, limits, "
        "one-line subject, storable-text check) against the same sources compiled by a "
        "plain `jinja2.Environment` (`StrictUndefined`, HTML bodies autoescaped).",
    ]
    return lines
