"""The retention stage (issue 16): one retention run over a large archive, and what it costs
the processing and sending going on meanwhile.

An ``archive`` client holds ``big`` communications (four per lead, a delivery attempt and a
provider event for one in four), built with set-based ``INSERT ... SELECT
generate_series``, received evenly over 400 days; its setting is ``content_days 30,
rows_days 180, leads_days 365``, so one run deletes about a tenth of the leads (with their
messages), deletes the messages from 180 to 365 days old and clears the content of those
from 30 to 180 days old. A ``live`` client meanwhile gets rounds of ``live`` new leads:
each round the lead processor drains them (leads/s), then the dispatcher sends the email
each one produced to the simulator's Resend API (comms/s). Rounds alternate: one with the
retention run beside it in the same event loop (as in the worker), one with the run
stopped (it resumes where it stopped), so the ratio compares like with like in the same
database as it changes; after the pairs, the run finishes alone.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from psycopg.types.json import Jsonb

from bench.common import Row, Section, Series
from bench.dispatch import _simulator, _with_latency
from lqs.db.connection import connect_async
from lqs.db.pool import open_pool
from lqs.db.retention import RetentionCounts, run_retention
from lqs.domain.retention import IDLE_RATIO
from lqs.simulator import SimulatorControl
from lqs.worker.dispatcher import Dispatcher, DispatcherOptions
from lqs.worker.processor import LeadProcessor

RETENTION = {"content_days": 30, "rows_days": 180, "leads_days": 365}
DAYS = 400

ARCHIVE_LEADS = """
INSERT INTO public.leads (client_id, email, first_name, company_name, consent_status,
                          dedupe_key, status, received_at, processed_at, score)
SELECT %(client)s, 'old' || i || '@company' || (i %% 997) || '.example', 'First' || i,
       'Company ' || (i %% 997), 'granted', 'email:old' || i || '@company' || (i %% 997)
       || '.example', 'disqualified',
       now() - make_interval(secs => i * %(step)s), now() - make_interval(secs => i * %(step)s),
       10
FROM generate_series(1, %(n)s) AS i
"""
ARCHIVE_COMMUNICATIONS = """
INSERT INTO public.communications (lead_id, client_id, type, recipient, subject, content,
                                   status, provider, external_id, template_id,
                                   template_variables, consent_status, created_at, sent_at)
SELECT l.id, l.client_id, 'email', l.email, 'Hello ' || l.first_name,
       '<html><body><p>Dear ' || l.first_name || ',</p>'
           || repeat('<p>A paragraph of the message this lead was sent.</p>', 6)
           || '</body></html>',
       'delivered', 'resend', 're_' || l.id || '_' || k, 'welcome@v1',
       jsonb_build_object('first_name', l.first_name, 'company', l.company_name), 'granted',
       l.received_at + make_interval(mins => k), l.received_at + make_interval(mins => k)
FROM public.leads AS l CROSS JOIN generate_series(1, 4) AS k
WHERE l.client_id = %(client)s
"""
ARCHIVE_ATTEMPTS = """
INSERT INTO public.delivery_attempts (communication_id, client_id, attempt, provider,
                                      started_at, finished_at, http_status, error_message,
                                      latency_ms, outcome, recorded)
SELECT c.id, c.client_id, 1, 'resend', c.created_at, c.created_at, 200,
       'accepted for ' || c.recipient, 40, 'accepted', true
FROM public.communications AS c
WHERE c.client_id = %(client)s AND c.external_id LIKE '%%\\_1'
"""
ARCHIVE_EVENTS = """
INSERT INTO public.provider_events (client_id, provider, event_id, communication_id,
                                    external_id, event_type, kind, recipient, occurred_at,
                                    payload, received_at, applied_at, effect)
SELECT c.client_id, 'resend', 'ev_' || c.id, c.id, c.external_id, 'email.delivered',
       'delivered', c.recipient, c.created_at,
       jsonb_build_object('type', 'email.delivered', 'data',
                          jsonb_build_object('email_id', c.external_id, 'to', c.recipient)),
       c.created_at, c.created_at, 'delivered'
FROM public.communications AS c
WHERE c.client_id = %(client)s AND c.external_id LIKE '%%\\_1'
"""

LIVE_SETTINGS = {
    "notification_email": "sales@bench.example",
    "notifications": {
        outcome: [{"channel": "email", "to": "client", "template": "lead_qualified"}]
        for outcome in ("qualified", "nurture", "disqualified")
    },
}
LIVE_LEADS = """
INSERT INTO public.leads (client_id, email, first_name, job_title, company_name,
                          consent_status, dedupe_key)
SELECT %(client)s, 'r' || %(round)s || 'lead' || i || '@company' || (i %% 997) || '.example',
       'First' || i, 'CEO', 'Company ' || (i %% 997), 'granted',
       'email:r' || %(round)s || 'lead' || i || '@company' || (i %% 997) || '.example'
FROM generate_series(1, %(n)s) AS i
"""


def _build(url: str, big: int, simulator: str) -> str:
    """The archive (``big`` communications) and the live client; the live client's id."""
    leads = big // 4
    delivery = {
        "email": {"primary": "resend"},
        "resend": {"api_key": "re_bench_fake", "from_address": "lqs@bench.example",
                   "base_url": simulator},
    }  # fmt: skip
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO public.clients (name, slug, settings) VALUES ('Archive', 'archive', %s)"
            " RETURNING id",
            (Jsonb({"retention": RETENTION}),),
        ).fetchone()
        assert row is not None
        archive = row[0]
        live_row = conn.execute(
            "INSERT INTO public.clients (name, slug, settings) VALUES ('Live', 'live', %s)"
            " RETURNING id",
            (Jsonb({**LIVE_SETTINGS, "delivery": delivery}),),
        ).fetchone()
        assert live_row is not None
        step = DAYS * 86_400 / leads
        conn.execute(ARCHIVE_LEADS, {"client": archive, "n": leads, "step": step})
        for statement in (ARCHIVE_COMMUNICATIONS, ARCHIVE_ATTEMPTS, ARCHIVE_EVENTS):
            conn.execute(statement.encode(), {"client": archive})
        # The statistics rollup's log of the archive's hours: recounted once, now, so that
        # the worker's refresh is not part of what is measured.
        conn.execute("TRUNCATE public.stats_stale_hours")
        conn.execute("VACUUM ANALYZE")
    print(f"retention: built {big:,} communications in {time.perf_counter() - started:.0f} s")
    return str(live_row[0])


async def _round(
    url: str, live: str, n: int, number: int, options: DispatcherOptions
) -> tuple[float, float]:
    """Queue ``n`` leads of the live client; drain the processor, then the dispatcher."""
    async with await connect_async(url, autocommit=True) as conn:
        await conn.execute(LIVE_LEADS, {"client": live, "round": number, "n": n})
    pool = await open_pool(url, min_size=1, max_size=4, worker=True)
    try:
        processor = LeadProcessor(pool, batch_size=100, in_flight=1, park_after=3)
        started = time.perf_counter()
        processed = await processor.drain()
        processing = processed / (time.perf_counter() - started)
        async with Dispatcher(pool, options) as dispatcher:
            started = time.perf_counter()
            stats = await dispatcher.drain()
            sending = stats.sent / (time.perf_counter() - started)
    finally:
        await pool.close()
    assert processed == n, processed
    assert stats.sent == n, stats
    return processing, sending


@dataclass
class _Measured:
    alone: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))
    during: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))
    retention_seconds: float = 0.0
    counts: list[RetentionCounts] = field(default_factory=list)


async def _measure(
    url: str, live_client: str, live: int, pairs: int, options: DispatcherOptions
) -> _Measured:
    """``pairs`` pairs of rounds, one with retention running beside it in the same event
    loop (as in the worker), one with it stopped (it resumes where it stopped), then the
    rest of the retention run alone."""
    measured = _Measured()
    number = 0

    async def one_round(into: tuple[list[float], list[float]], label: str) -> None:
        nonlocal number
        number += 1
        processing, sending = await _round(url, live_client, live, number, options)
        into[0].append(processing)
        into[1].append(sending)
        print(f"  {label}: {processing:,.0f} leads/s, {sending:,.0f} comms/s", flush=True)

    async def retain(stop: asyncio.Event) -> bool:
        """One stretch of the run; whether it finished (rather than stopped)."""
        started = time.perf_counter()
        async with await connect_async(url, autocommit=True) as conn:
            done = await run_retention(conn, datetime.now(UTC), slug="archive", stop=stop)
        measured.retention_seconds += time.perf_counter() - started
        counts = done[0].counts
        assert counts is not None, done
        measured.counts.append(counts)
        return not stop.is_set()

    finished = False
    for _ in range(pairs):
        await one_round(measured.alone, "alone")
        stop = asyncio.Event()
        running = asyncio.create_task(retain(stop))
        await one_round(measured.during, "during retention")
        if running.done():  # the run ended during the round: it was not beside it all along
            measured.during[0].pop()
            measured.during[1].pop()
        stop.set()
        finished = await running
        if finished:
            break
    if not finished:
        await retain(asyncio.Event())
    return measured


def run(url: str, big: int, live: int, repeats: int) -> Section:
    """``big`` archived communications; ``repeats`` pairs of rounds of ``live`` leads
    with and without the retention run beside them."""
    options = DispatcherOptions(concurrency=32, batch_size=100, timeout=10.0, batches=True)
    with _simulator() as simulator, SimulatorControl(simulator) as control:
        control.configure(_with_latency(0.0))
        live_client = _build(url, big, simulator)
        measured = asyncio.run(_measure(url, live_client, live, repeats, options))
    total = RetentionCounts()
    for part in measured.counts:
        for name, value in vars(part).items():
            setattr(total, name, getattr(total, name) + value)
    logged = total.as_log()
    seconds = measured.retention_seconds
    print(f"retention: {seconds:.1f} s, {logged}")
    rows = []
    if measured.during[0]:
        for index, (what, unit) in enumerate((("processing", "leads/s"), ("sending", "comms/s"))):
            rows.append(
                Row(
                    f"{what} during a retention run (idle ratio {IDLE_RATIO:g})",
                    Series("during", measured.during[index]),
                    Series("retention stopped", measured.alone[index]),
                    unit,
                    0.80,
                )
            )
    changed = sum(v for k, v in logged.items() if k != "batches")
    markdown = [
        f"One `lqs retention run` over {big:,} communications ({big // 4:,} leads, a"
        f" delivery attempt and a provider event for one message in four; received evenly"
        f" over {DAYS} days; `content_days 30, rows_days 180, leads_days 365`; after each"
        f" batch it idles {IDLE_RATIO:g} times the batch's duration): **{seconds:.0f} s** in"
        f" all, {total.batches:,} batches of at most 10,000 rows, {changed:,} rows changed"
        f" or deleted ({', '.join(f'{k} {v:,}' for k, v in logged.items() if k != 'batches')})."
        f" Rounds of {live:,} leads (processed, then their emails sent) alternated with the"
        f" run beside them and stopped ({len(measured.during[0])} pairs; it resumes where it"
        f" stopped).",
    ]
    return Section("Retention (issue 16)", rows, markdown)
