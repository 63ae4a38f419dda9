"""Claim latency against table size, and the first claim after an idle stretch.

Size: ``claim_queued_leads(conn, 100)`` on a table of 10,000 leads and on one of ``big``
leads, each mostly processed with the same small queued backlog. The claim reads the
partial index on queued leads, so its cost must follow the backlog, not the table.

Idle: a worker that claims on an empty queue for a while, then meets a backlog. Once
psycopg prepares the claim (its 6th run on a connection), PostgreSQL may cache a generic
plan for it, made for an empty queue; ``open_pool(worker=True)`` sets
``plan_cache_mode = force_custom_plan`` against that. The first claim after the backlog
arrives is timed on such a worker connection and on a plain one, and compared with the
worker's claim once ANALYZE has seen the backlog. Which plan goes wrong depends on what
the statistics said while the queue was empty, so three tables are tried: the big one
(all processed), a young install's (a few processed leads, analysed) and a new install's
(never analysed).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from bench.common import Row, Section, Series, interleave, scratch_database
from lqs.db.leads import claim_queued_leads
from lqs.db.pool import open_pool

SMALL = 10_000
"""Rows in the baseline table."""
BACKLOG = 1_000
"""Queued leads in both tables while claim latency is measured; the rest are processed."""
CLAIM = 100
CLAIMS_PER_REPEAT = 200
IDLE_CLAIMS = 20
"""Claims on an empty queue before the backlog arrives: enough for psycopg to prepare the
statement (after 5 runs) and for PostgreSQL to settle on a generic plan (after 5 more)."""
ARRIVING = 10_000
"""The backlog that arrives after the idle stretch."""
YOUNG = 100
"""Leads in the young install's table (all processed, analysed) when the queue is empty."""
GROWTH_LIMIT = 5.0
"""A post-idle claim slower than this many warm claims is flagged."""

# Sequential ids and zero-padded keys: every index of the table is appended to, so ten
# million rows go in at a steady pace instead of slowing down with random index inserts.
_PROCESSED = """
INSERT INTO public.leads (id, client_id, email, first_name, last_name, job_title,
                          company_name, company_size, country, source, consent_status,
                          status, score, grade, dedupe_key, received_at, processed_at)
SELECT lpad(to_hex(i), 32, '0')::uuid, %(client)s,
       'lead' || lpad(i::text, 10, '0') || '@company' || (i %% 997) || '.example',
       'First' || i, 'Last' || i, (ARRAY['CEO', 'Engineer', 'VP Sales', 'Analyst'])[1 + i %% 4],
       'Company ' || (i %% 997), (i * 7) %% 5000, (ARRAY['US', 'GB', 'DE', 'FR'])[1 + i %% 4],
       'benchmark', 'granted', 'qualified', 50, 'B',
       'email:lead' || lpad(i::text, 10, '0') || '@company' || (i %% 997) || '.example',
       now() - interval '1 day' - i * interval '1 millisecond', now() - interval '1 day'
FROM generate_series(1, %(n)s) AS i
"""

_QUEUED = """
INSERT INTO public.leads (client_id, email, first_name, last_name, job_title, company_name,
                          company_size, country, source, consent_status, dedupe_key)
SELECT %(client)s, 'queued' || i || '.' || %(tag)s || '@company' || (i %% 997) || '.example',
       'First' || i, 'Last' || i, (ARRAY['CEO', 'Engineer', 'VP Sales', 'Analyst'])[1 + i %% 4],
       'Company ' || (i %% 997), (i * 7) %% 5000, (ARRAY['US', 'GB', 'DE', 'FR'])[1 + i %% 4],
       'benchmark', (ARRAY['granted', 'unknown'])[1 + i %% 2],
       'email:queued' || i || '.' || %(tag)s || '@company' || (i %% 997) || '.example'
FROM generate_series(1, %(n)s) AS i
"""

_tags = itertools.count()


def _client(conn: psycopg.Connection[Any]) -> Any:
    row = conn.execute("SELECT id FROM public.clients WHERE slug = 'bench-scale'").fetchone()
    if row is None:
        row = conn.execute(
            "INSERT INTO public.clients (name, slug) VALUES ('Bench scale', 'bench-scale')"
            " RETURNING id"
        ).fetchone()
    assert row is not None
    return row[0]


def _queue(conn: psycopg.Connection[Any], n: int) -> None:
    conn.execute(_QUEUED, {"client": _client(conn), "n": n, "tag": f"t{next(_tags)}"})


def _empty_queue(conn: psycopg.Connection[Any]) -> None:
    conn.execute("DELETE FROM public.leads WHERE status = 'queued'")
    conn.execute("VACUUM ANALYZE public.leads")


def fill(url: str, total: int) -> float:
    """``total`` leads, all but :data:`BACKLOG` processed, vacuumed and analysed; seconds."""
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_PROCESSED, {"client": _client(conn), "n": total - BACKLOG})
        _queue(conn, BACKLOG)
        filled = time.perf_counter()
        conn.execute("VACUUM ANALYZE public.leads")
    elapsed = time.perf_counter() - started
    print(
        f"  filled {total:,} leads in {filled - started:.1f} s, "
        f"VACUUM ANALYZE {elapsed - (filled - started):.1f} s",
        flush=True,
    )
    return elapsed


# ---------------------------------------------------------------- timing one claim


async def _timed_claim(conn: AsyncConnection) -> tuple[float, int]:
    """Milliseconds of one claim, and how many leads it locked.

    The transaction commits without changing anything: a rollback would also do, but
    psycopg forgets its prepared statements on ROLLBACK, and the worker commits.
    """
    async with conn.transaction():
        started = time.perf_counter()
        claimed = await claim_queued_leads(conn, CLAIM)
        elapsed = time.perf_counter() - started
    return elapsed * 1000, len(claimed)


async def _claims(pool: AsyncConnectionPool, count: int, latencies: list[float]) -> float:
    """``count`` claims on one worker connection; claims/s, latencies appended."""
    async with pool.connection() as conn:
        times = []
        for _ in range(count):
            ms, claimed = await _timed_claim(conn)
            assert claimed == CLAIM, claimed
            times.append(ms)
    latencies += times
    return count / (sum(times) / 1000)


async def _plan(conn: AsyncConnection) -> str:
    """The plan the connection would now use for its prepared claim, in one line."""
    cur = await conn.execute(
        "SELECT name FROM pg_prepared_statements WHERE statement LIKE '%SKIP LOCKED%'"
    )
    row = await cur.fetchone()
    await conn.commit()
    if row is None:
        return "not prepared"
    async with conn.transaction():
        cur = await conn.execute(f"EXPLAIN EXECUTE {row[0]}({CLAIM})".encode())
        lines = [str(line) for (line,) in await cur.fetchall()]
    nodes = [line.strip().removeprefix("->").split("  (")[0].strip() for line in lines]
    skipped = ("Limit", "LockRows", "Filter", "Sort Key", "Recheck Cond")
    return " → ".join(n.removesuffix(" on leads l") for n in nodes if not n.startswith(skipped))


# ---------------------------------------------------------------- the idle regression


@dataclass(frozen=True)
class AfterIdle:
    """One idle-then-backlog trial: milliseconds and the plans each connection used."""

    worker_ms: float
    plain_ms: float
    warm_ms: float
    worker_plan: str
    plain_plan: str


async def _after_idle(url: str) -> AfterIdle:
    """Claim on an empty queue, queue :data:`ARRIVING` leads, time the next claim."""
    pool = await open_pool(url, min_size=1, max_size=1, worker=True)
    try:
        async with pool.connection() as worker, await AsyncConnection.connect(url) as plain:
            for conn in (worker, plain):
                for _ in range(IDLE_CLAIMS):
                    _, claimed = await _timed_claim(conn)
                    assert claimed == 0, "the queue should be empty"
            with psycopg.connect(url, autocommit=True) as writer:
                _queue(writer, ARRIVING)
                # Set the new rows' hint bits now, so neither timed claim pays for it.
                writer.execute("SELECT count(*) FROM public.leads WHERE status = 'queued'")
            worker_ms, _ = await _timed_claim(worker)
            plain_ms, _ = await _timed_claim(plain)
            worker_plan = await _plan(worker)
            plain_plan = await _plan(plain)
            with psycopg.connect(url, autocommit=True) as writer:
                writer.execute("ANALYZE public.leads")
            warm = [(await _timed_claim(worker))[0] for _ in range(IDLE_CLAIMS)]
    finally:
        await pool.close()
    with psycopg.connect(url, autocommit=True) as conn:
        _empty_queue(conn)
    return AfterIdle(worker_ms, plain_ms, statistics.median(warm), worker_plan, plain_plan)


@contextmanager
def _mostly_processed(url: str) -> Iterator[str]:
    """The big table of the size test, its queue empty."""
    yield url


@contextmanager
def _young(url: str) -> Iterator[str]:
    """A young install: autovacuum has analysed its first leads, all processed."""
    with scratch_database(url) as young_url:
        with psycopg.connect(young_url, autocommit=True) as conn:
            conn.execute(_PROCESSED, {"client": _client(conn), "n": YOUNG})
            conn.execute("VACUUM ANALYZE public.leads")
        yield young_url


@contextmanager
def _new(url: str) -> Iterator[str]:
    """A new install: migrated, no lead yet, never analysed."""
    with scratch_database(url) as new_url:
        yield new_url


# ---------------------------------------------------------------- the stage


def run(url: str, *, big: int, repeats: int) -> Section:
    """Claim latency at 10,000 and ``big`` rows, and the first claim after idling.

    ``url`` is an empty scratch database on a server where the benchmark may create more
    (the small table and the idle trials get their own, dropped afterwards).
    """
    print(f"scale: claims of {CLAIM} with {BACKLOG:,} queued in {SMALL:,} and {big:,} leads")
    small, large = f"{SMALL:,} leads", f"{big:,} leads"
    latencies: dict[str, list[float]] = {small: [], large: []}
    with asyncio.Runner() as runner, scratch_database(url) as small_url:
        fills = {small: fill(small_url, SMALL), large: fill(url, big)}
        pools = {
            name: runner.run(open_pool(u, min_size=1, max_size=1, worker=True))
            for name, u in ((small, small_url), (large, url))
        }
        try:
            for pool in pools.values():  # warm-up: caches, the prepared statement
                runner.run(_claims(pool, IDLE_CLAIMS, []))

            def measure(name: str) -> float:
                return runner.run(_claims(pools[name], CLAIMS_PER_REPEAT, latencies[name]))

            series = interleave(repeats, {name: functools.partial(measure, name) for name in pools})
        finally:
            for pool in pools.values():
                runner.run(pool.close())

    with psycopg.connect(url, autocommit=True) as conn:
        _empty_queue(conn)
    states = {
        f"{big:,} leads, all processed": _mostly_processed,
        f"{YOUNG} leads, all processed, analysed": _young,
        "no lead yet, never analysed": _new,
    }
    print(f"scale: first claim of {ARRIVING:,} arriving leads after {IDLE_CLAIMS} idle claims")
    idle: dict[str, list[AfterIdle]] = {state: [] for state in states}
    with asyncio.Runner() as runner:
        for _ in range(repeats):
            for state, prepared in states.items():
                with prepared(url) as state_url:
                    trial = runner.run(_after_idle(state_url))
                idle[state].append(trial)
                print(
                    f"  {state}: worker {trial.worker_ms:.1f} ms, plain {trial.plain_ms:.1f} ms,"
                    f" warm {trial.warm_ms:.1f} ms",
                    flush=True,
                )
    return _section(series, latencies, fills, idle, large, small)


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values):,.1f} ms ({min(values):,.1f}–{max(values):,.1f})"


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def _plans(plans: list[str]) -> str:
    return " / ".join(dict.fromkeys(plans))


def _section(
    series: dict[str, Series],
    latencies: dict[str, list[float]],
    fills: dict[str, float],
    idle: dict[str, list[AfterIdle]],
    large: str,
    small: str,
) -> Section:
    lines = [
        f"Claim latency: `claim_queued_leads(conn, {CLAIM})` on a worker connection, "
        f"{BACKLOG:,} leads queued and the rest processed, {CLAIMS_PER_REPEAT} claims per "
        "repeat, each in a transaction that commits without changes.",
        "",
        "| leads in the table | claims/s | median claim | p99 claim | fill + VACUUM ANALYZE |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in (small, large):
        found = latencies[name]
        lines.append(
            f"| {name} | {series[name].median:,.0f} ({series[name].span()}) "
            f"| {statistics.median(found):.2f} ms | {_p99(found):.2f} ms "
            f"| {fills[name]:,.0f} s |"
        )
    growth = statistics.median(latencies[large]) / statistics.median(latencies[small])
    lines += [
        "",
        f"Median claim with {large} / with {small}: **{growth:.2f}×** (must stay near 1×).",
        "",
        f"After idling: {IDLE_CLAIMS} claims on an empty queue, then {ARRIVING:,} leads arrive "
        "(no ANALYZE) and the next claim is timed on the same connection: a worker connection "
        "(`open_pool(worker=True)`, `plan_cache_mode = force_custom_plan`) and a plain one "
        "(PostgreSQL may reuse a generic plan made for the empty queue). *Warm* is the worker's "
        "median claim once ANALYZE has seen the backlog.",
        "",
        "| table while the queue was empty | worker | plain | warm | worker / warm "
        "| plan (worker; plain) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    flagged = False
    for state, trials in idle.items():
        worker = [t.worker_ms for t in trials]
        warm = [t.warm_ms for t in trials]
        ratio = statistics.median(worker) / statistics.median(warm)
        flag = ""
        if ratio > GROWTH_LIMIT:
            flag, flagged = " ⚠️", True
            print(
                f"WARNING scale: after idling ({state}), the worker's first claim took "
                f"{ratio:.1f}× its warm claim (limit {GROWTH_LIMIT:g}×)",
                file=sys.stderr,
            )
        lines.append(
            f"| {state} | {_ms(worker)} | {_ms([t.plain_ms for t in trials])} | {_ms(warm)} "
            f"| **{ratio:.1f}×**{flag} | {_plans([t.worker_plan for t in trials])}; "
            f"{_plans([t.plain_plan for t in trials])} |"
        )
    if flagged:
        lines += ["", f"⚠️ The worker's first claim after idling took over {GROWTH_LIMIT:g}× "
                  "its warm claim."]  # fmt: skip
    row = Row(
        f"claim {CLAIM} queued leads, {large} in the table (baseline: {small})",
        series[large],
        series[small],
        "claims/s",
        0.5,
    )
    return Section("Claim latency and scale", rows=[row], markdown=lines)
