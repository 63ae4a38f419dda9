"""Latency in daemon mode: how long a lead waits before it is processed, and before its
email is accepted by the provider, at a steady arrival rate.

The same running system as the end-to-end bench (:func:`bench.e2e.running_pipeline`: the
simulator, ``lqs serve`` and the worker daemon with its default settings, every lead
qualifying and sending one email). A load generator in a process of its own posts single
leads with ``POST /v1/leads`` on an open-loop schedule (lead ``i`` is due at
``t0 + i / rate`` whatever the answers) over several connections for ``duration`` seconds.
Latency is measured in the database, per lead: ``leads.received_at`` (the intake
transaction's time) to ``leads.processed_at`` (the processing transaction's start), and
to ``communications.sent_at`` (when the provider's answer accepting the email arrived).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import httpx
import psycopg

from bench.common import Row, Section, Series
from bench.e2e import Pipeline, qualified_leads, running_pipeline

CONNECTIONS = 16
"""Connections the load generator keeps open to the API."""
GOAL_P50_MS = 50.0
GOAL_P99_MS = 250.0
SETTLE_WITHIN = 60.0
"""Seconds the pipeline gets, after the last post, to process and send everything."""
KEPT_UP = 0.95
"""Below this share of the asked rate, the report says the load generator fell behind."""


@dataclass(frozen=True)
class LoadReport:
    """What the load generator did."""

    scheduled: int
    statuses: dict[int, int]
    """Answers by HTTP status."""
    transport_errors: int
    """Posts that got no answer at all."""
    first_problem: str | None
    """The first transport error or answer other than 201, for the report."""
    send_span: float
    """Seconds from the first post to the start of the last."""
    max_lag: float
    """The worst lateness of a post behind its schedule (every connection busy), in s."""
    answer_ms: tuple[float, float, float]
    """p50, p95, p99 of due → answered, in milliseconds."""

    @property
    def created(self) -> int:
        return self.statuses.get(201, 0)

    @property
    def failed(self) -> int:
        return self.scheduled - self.created

    def achieved_rate(self, rate: float) -> float:
        """Posts per second actually sent (``rate`` when every post kept to schedule)."""
        return self.scheduled / (self.send_span + 1 / rate)


@dataclass(frozen=True)
class Latencies:
    """Per-lead latencies from the database, in milliseconds, and what the worker did."""

    to_processed: list[float]
    to_accepted: list[float]
    to_request: list[float]
    """Processing transaction started → request to the provider started."""
    request: list[float]
    """Request to the provider started → answered."""
    leads: int
    transactions: int
    """Processing transactions (distinct ``processed_at``)."""
    retries: int


def _percentiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        value = values[0] if values else float("nan")
        return value, value, value
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


# ---------------------------------------------------------------------- the load generator


async def _generate(
    api: str, headers: dict[str, str], rate: float, duration: float, connections: int
) -> LoadReport:
    total = max(1, round(rate * duration))
    leads = qualified_leads(total, "load")
    statuses: Counter[int] = Counter()
    problems: list[str] = []
    answer_ms: list[float] = []
    starts: list[tuple[float, float]] = []  # (due, started) of every post
    due_posts: asyncio.Queue[tuple[dict[str, Any], float] | None] = asyncio.Queue()
    ready = asyncio.Semaphore(0)
    loop = asyncio.get_running_loop()

    async def connection() -> None:
        # One client per connection, one request at a time: posts due while every
        # connection is busy wait in the queue, not in httpx's pool, whose bookkeeping
        # grows with its waiting requests and would eat the CPU of the system under test.
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(
            base_url=api, headers=headers, limits=limits, timeout=30
        ) as http:
            await http.get("/healthz")
            ready.release()
            while (item := await due_posts.get()) is not None:
                lead, due = item
                starts.append((due, loop.time()))
                try:
                    answer = await http.post("/v1/leads", json=lead)
                except httpx.HTTPError as exc:
                    problems.append(f"{type(exc).__name__}: {exc}")
                    continue
                statuses[answer.status_code] += 1
                answer_ms.append((loop.time() - due) * 1000)
                if answer.status_code != 201:
                    problems.append(f"HTTP {answer.status_code}: {answer.text[:200]}")

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    for _ in workers:
        await ready.acquire()  # every connection open before the clock starts
    t0 = loop.time()
    for i, lead in enumerate(leads):
        due = t0 + i / rate
        wait = due - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        due_posts.put_nowait((lead, due))
    for _ in workers:
        due_posts.put_nowait(None)
    await asyncio.gather(*workers)
    return LoadReport(
        scheduled=total,
        statuses=dict(statuses),
        transport_errors=total - sum(statuses.values()),
        first_problem=problems[0] if problems else None,
        send_span=max(start for _, start in starts) - t0,
        max_lag=max(start - due for due, start in starts),
        answer_ms=_percentiles(answer_ms),
    )


def _load_process(
    results: Connection, api: str, headers: dict[str, str], rate: float, duration: float
) -> None:
    """The load generator's process: its report, or the error's traceback, to ``results``."""
    try:
        results.send(asyncio.run(_generate(api, headers, rate, duration, CONNECTIONS)))
    except BaseException:
        results.send(traceback.format_exc())
        raise


def _generate_load(pipeline: Pipeline, rate: float, duration: float) -> LoadReport:
    """Run the load generator in a process of its own (spawned: nothing inherited but its
    arguments) and return its report; the process is ended on every path."""
    context = multiprocessing.get_context("spawn")
    receiving, sending = context.Pipe(duplex=False)
    process = context.Process(
        target=_load_process,
        args=(sending, pipeline.api, pipeline.headers, rate, duration),
        name="lqs-bench-load",
    )
    process.start()
    sending.close()
    try:
        # Room for an API that takes the posts at a fifth of the rate, and no more.
        deadline = time.monotonic() + 5 * duration + 120
        while not receiving.poll(0.5):
            pipeline.check()
            if not process.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the load generator stopped (exit code {process.exitcode})")
        result = receiving.recv()
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join()
        receiving.close()
    if not isinstance(result, LoadReport):
        raise RuntimeError(f"the load generator failed:\n{result}")
    return result


# ---------------------------------------------------------------------- the measurement

# One row per posted lead: its two latencies and the steps in between, in milliseconds.
_LATENCIES = """
SELECT extract(epoch FROM l.processed_at - l.received_at) * 1000,
       extract(epoch FROM c.sent_at - l.received_at) * 1000,
       extract(epoch FROM a.started_at - l.processed_at) * 1000,
       extract(epoch FROM a.finished_at - a.started_at) * 1000
FROM public.leads AS l
LEFT JOIN public.communications AS c ON c.lead_id = l.id
LEFT JOIN public.delivery_attempts AS a ON a.communication_id = c.id AND a.attempt = 1
"""

_WORK_DONE = """
SELECT (SELECT count(*) FROM public.leads),
       (SELECT count(DISTINCT processed_at) FROM public.leads),
       (SELECT coalesce(sum(retry_count), 0) FROM public.communications)
"""

_SETTLED = """
SELECT (SELECT count(*) FROM public.leads WHERE status = 'queued') = 0
   AND (SELECT count(*) FROM public.communications WHERE sent_at IS NOT NULL) >= %s
"""


def _settled(conn: psycopg.Connection[Any], expected: int) -> bool:
    """Every lead processed, and ``expected`` emails accepted."""
    row = conn.execute(_SETTLED, (expected,)).fetchone()
    return bool(row and row[0])


def _measure(pipeline: Pipeline, rate: float, duration: float) -> tuple[LoadReport, Latencies]:
    pipeline.reset()
    load = _generate_load(pipeline, rate, duration)
    pipeline.wait_until(
        lambda conn: _settled(conn, load.created),
        SETTLE_WITHIN,
        "latency: processing and sending what was posted",
    )
    with psycopg.connect(pipeline.database) as conn:
        rows = conn.execute(_LATENCIES).fetchall()
        work = conn.execute(_WORK_DONE).fetchone()
    assert work is not None
    to_processed, to_accepted, to_request, request = (
        [float(row[i]) for row in rows if row[i] is not None] for i in range(4)
    )
    leads, transactions, retries = (int(v) for v in work)
    return load, Latencies(
        to_processed, to_accepted, to_request, request, leads, transactions, retries
    )


# ---------------------------------------------------------------------- the report


def _ms(value: float) -> str:
    return f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def _verdict(p50: float, p99: float) -> str:
    ok50, ok99 = p50 <= GOAL_P50_MS, p99 <= GOAL_P99_MS
    return f"p50 {'✅' if ok50 else '❌'}, p99 {'✅' if ok99 else '❌'}"


def _load_line(load: LoadReport, rate: float, duration: float) -> str:
    achieved = load.achieved_rate(rate)
    answers = ", ".join(f"{count:,} × {status}" for status, count in sorted(load.statuses.items()))
    line = (
        f"A load generator in a process of its own posted single qualifying leads with "
        f"`POST /v1/leads` on an open-loop schedule, {rate:g} leads/s for {duration:g} s over "
        f"{CONNECTIONS} connections: {load.scheduled:,} posts in {load.send_span:.1f} s, "
        f"**{achieved:,.1f} leads/s achieved** (the latest post started "
        f"{load.max_lag * 1000:,.0f} ms after it was due); answers: {answers or 'none'}"
    )
    if load.failed:
        line += f"; {load.failed:,} not created, the first: {load.first_problem}"
    if achieved < KEPT_UP * rate:
        line += (
            f". **The API did not keep up with {rate:g} leads/s on this machine**: the "
            "posts queued at the load generator, a wait the latencies below (which start "
            "when the API stores the lead) do not include"
        )
    return line + "."


def _markdown(load: LoadReport, latencies: Latencies, rate: float, duration: float) -> list[str]:
    goal = f"p50 ≤ {GOAL_P50_MS:.0f} ms, p99 ≤ {GOAL_P99_MS:.0f} ms"
    table = [
        f"| path | leads | mean | p50 | p95 | p99 | goal ({goal}) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, values in (
        ("intake → processed", latencies.to_processed),
        ("intake → provider accepted", latencies.to_accepted),
    ):
        p50, p95, p99 = _percentiles(values)
        mean = statistics.fmean(values) if values else float("nan")
        table.append(
            f"| {label} | {len(values):,} | {_ms(mean)} | {_ms(p50)} | {_ms(p95)} | {_ms(p99)} "
            f"| {_verdict(p50, p99)} |"
        )
    table.append(
        "| seed's every-minute cron (for comparison) | | 30 s (a lead waits half a minute "
        "on average) | | | | |"
    )
    steps = (
        ("stored → processing transaction started", _percentiles(latencies.to_processed)),
        (
            "processing started → request to the provider started",
            _percentiles(latencies.to_request),
        ),
        (
            "request to the provider → its answer (the simulator, no injected latency)",
            _percentiles(latencies.request),
        ),
        ("`POST /v1/leads` due → answered (at the load generator)", load.answer_ms),
    )
    per_transaction = latencies.leads / max(latencies.transactions, 1)
    return [
        "Daemon mode: `lqs serve`, `lqs worker` (default settings but for a short retry "
        "backoff) and `lqs simulate` as "
        "separate processes, as in the end-to-end bench; each lead sends one email through "
        "the simulator's Resend API, which POSTs two signed delivery webhooks back to the "
        "API while the load runs.",
        "",
        _load_line(load, rate, duration),
        "",
        "Measured in the database, per lead, from `leads.received_at` (the intake "
        "transaction's time) to `leads.processed_at` (the start of the processing "
        "transaction, which commits once the batch is scored and its emails written) and to "
        "`communications.sent_at` "
        "(when the provider's answer arrived; the row shows `sent` once the dispatcher "
        "writes its buffered acknowledgements, within 50 ms).",
        "",
        *table,
        "",
        f"Where the time goes: {latencies.leads:,} leads in {latencies.transactions:,} "
        f"processing transactions ({per_transaction:.1f} leads each), "
        f"{latencies.retries:,} retries.",
        "",
        "| step | p50 | p95 | p99 |",
        "| --- | --- | --- | --- |",
        *(f"| {label} | {' | '.join(_ms(v) for v in values)} |" for label, values in steps),
    ]


def run(url: str, *, rate: float, duration: float) -> Section:
    """Post ``rate`` leads/s for ``duration`` seconds; the latency tables and notes."""
    with running_pipeline(url) as pipeline:
        pipeline.warm_up()
        print(
            f"latency: {rate:g} leads/s for {duration:g} s, {CONNECTIONS} connections "
            f"(logs in {pipeline.logs})",
            flush=True,
        )
        load, latencies = _measure(pipeline, rate, duration)
    paths = {"processed": latencies.to_processed, "provider accepted": latencies.to_accepted}
    for label, values in paths.items():
        print(f"  intake → {label}: p50/p95/p99 {', '.join(map(_ms, _percentiles(values)))}")
    print(f"  posted at {load.achieved_rate(rate):,.1f} leads/s", flush=True)
    p50, _, p99 = _percentiles(latencies.to_accepted)
    stage = f"daemon latency at {rate:g} leads/s, webhooks flowing: intake → provider accepted"
    rows = [
        Row(f"{stage}, {name}", Series(name, [value], worked_out=True, decimals=1), None, "ms",
            goal, at_most=True)
        for name, value, goal in (("p50", p50, GOAL_P50_MS), ("p99", p99, GOAL_P99_MS))
    ]  # fmt: skip
    return Section(
        "Latency (daemon mode)", rows, markdown=_markdown(load, latencies, rate, duration)
    )
