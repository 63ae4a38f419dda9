"""The dispatcher stage: communications sent to the provider simulator.

Two comparisons, both against the simulator's Resend API served by ``lqs simulate`` in a
process of its own (a real provider is remote: its work must not share the dispatcher's
interpreter):

- **No injected latency**: LQS against a no-op dispatch loop on the same database, which
  claims a batch with a lease exactly as :func:`lqs.db.dispatch.claim_due` does, then
  acknowledges it (deletes the queue rows, marks the communications ``sent``) without
  calling anyone. What is left is the price of HTTP, the checks and the attempts history.
  Beside it, a **same-writes floor** that also writes what the dispatcher must for the
  Resend batches it sends: the batch request (``provider_batches``, the members' batch
  key) with the claim, then per message its attempt, the provider's id and answer (a
  jsonb the size the Resend adapter keeps) and the queue row deleted. What is left
  against it is HTTP, the checks and the Python around them.
- **Injected latency** (every answer delayed by a fixed time): LQS sending one request per
  email against the most any dispatcher can do with ``concurrency`` requests in flight,
  ``concurrency / latency``.

The dispatcher sends a client's first-attempt emails through Resend's batch endpoint (up to
100 per request) by default; each comparison also runs the other way for context, since one
request per email is what SendGrid, Twilio, web push and webhooks always cost.

Each run starts from the same pending rows, written with SQL (one lead, one email to the
client's sales address and one queue row per communication).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.types.json import Jsonb

from bench.common import ROOT, Row, Series, free_port, interleave
from lqs.db.pool import open_pool
from lqs.simulator import Faults, Latency, ResendConfig, SimulatorConfig, SimulatorControl
from lqs.worker.dispatcher import Dispatcher, DispatcherOptions

BATCH_SIZE = 100
SAME_WRITES = "same-writes floor"
CONCURRENCY = 32
TIMEOUT = 10.0
LATENCIES = (0.05, 0.1, 0.2)

QUEUE_LEADS = """
INSERT INTO public.leads (client_id, email, first_name, job_title, company_name,
                          consent_status, dedupe_key, status)
SELECT %(client)s, 'lead' || i || '@company' || (i %% 997) || '.example', 'First' || i,
       'CEO', 'Company ' || (i %% 997), 'granted',
       'email:lead' || i || '@company' || (i %% 997) || '.example', 'qualified'
FROM generate_series(1, %(n)s) AS i
"""

# What the processor writes for a qualified lead: a pending email (a subject and an HTML
# body of about 600 bytes) and its queue row, due now.
QUEUE_COMMUNICATIONS = """
WITH made AS (
    INSERT INTO public.communications (lead_id, client_id, type, recipient, subject, content,
                                       template_id, consent_status)
    SELECT l.id, l.client_id, 'email', 'sales@bench.example',
           'New qualified lead: ' || l.first_name || ' at ' || l.company_name,
           '<html><body><h1>New qualified lead</h1><p>' || l.first_name || ' ('
               || l.job_title || ', ' || l.company_name || ') scored 60.</p>'
               || repeat('<p>Scoring breakdown line for this lead.</p>', 12)
               || '</body></html>',
           'lead_qualified', 'granted'
    FROM public.leads AS l
    RETURNING id, client_id
)
INSERT INTO public.delivery_queue (communication_id, client_id, priority)
SELECT id, client_id, 5 FROM made
"""


def _prepare(url: str, n: int, simulator: str) -> None:
    """The same ``n`` pending communications, due now, before every run."""
    delivery = {
        "email": {"primary": "resend"},
        "resend": {"api_key": "re_bench_fake", "from_address": "lqs@bench.example",
                   "base_url": simulator},
    }  # fmt: skip
    settings = {"notification_email": "sales@bench.example", "delivery": delivery}
    with psycopg.connect(url) as conn:
        conn.execute("TRUNCATE public.leads, public.clients CASCADE")
        row = conn.execute(
            "INSERT INTO public.clients (name, slug, settings) VALUES ('Bench', 'bench', %s)"
            " RETURNING id",
            (Jsonb(settings),),
        ).fetchone()
        assert row is not None
        conn.execute(QUEUE_LEADS, {"client": row[0], "n": n})
        conn.execute(QUEUE_COMMUNICATIONS)
    # Autovacuum would analyse after an insert this size, at a moment of its choosing: do
    # it now, so that every run is planned with the same statistics.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE public.leads, public.communications, public.delivery_queue")


def _check_all_sent(url: str, n: int) -> None:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'sent'),"
            " (SELECT count(*) FROM public.delivery_queue) FROM public.communications"
        ).fetchone()
    assert row == (n, 0), row


def _check_same_writes(url: str, n: int) -> None:
    """The floor left what the dispatcher leaves: an attempt, a provider id and a batch."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM public.delivery_attempts),"
            " (SELECT count(*) FROM public.communications WHERE external_reference ? 'batch'),"
            " (SELECT coalesce(sum(cardinality(members)), 0) FROM public.provider_batches)"
        ).fetchone()
    assert row == (n, n, n), row


async def _lqs(url: str, n: int, options: DispatcherOptions) -> float:
    # The worker's pool for one processing batch in flight (lqs.worker.run).
    pool = await open_pool(url, min_size=1, max_size=4, worker=True)
    try:
        async with Dispatcher(pool, options) as dispatcher:
            started = time.perf_counter()
            stats = await dispatcher.drain()
            elapsed = time.perf_counter() - started
    finally:
        await pool.close()
    assert stats.sent == n, stats
    return n / elapsed


# The claim of lqs.db.dispatch.claim_due (lease, attempt count, due again at the lease's
# end), returning what a sender needs from the communication; nothing else.
BASELINE_CLAIM = """
WITH due AS (
    SELECT q.communication_id
    FROM public.delivery_queue AS q
    WHERE q.next_attempt_at <= now()
    ORDER BY q.priority, q.next_attempt_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE public.delivery_queue AS q
    SET attempts = q.attempts + 1,
        lease_owner = %(owner)s,
        lease_expires_at = now() + make_interval(secs => %(lease)s),
        next_attempt_at = now() + make_interval(secs => %(lease)s)
    FROM due
    WHERE q.communication_id = due.communication_id
    RETURNING q.communication_id
)
SELECT c.id, c.recipient, c.subject, c.content
FROM claimed JOIN public.communications AS c ON c.id = claimed.communication_id
"""


async def _baseline(url: str, n: int) -> float:
    """Claim a batch with a lease and commit; acknowledge it and commit; no HTTP."""
    pool = await open_pool(url, min_size=1, max_size=2, worker=True)
    sent = 0
    try:
        started = time.perf_counter()
        while True:
            async with pool.connection() as conn:
                async with conn.transaction():
                    cur = await conn.execute(
                        BASELINE_CLAIM, {"limit": BATCH_SIZE, "owner": "bench", "lease": 60.0}
                    )
                    ids = [row[0] for row in await cur.fetchall()]
                if not ids:
                    break
                async with conn.transaction():
                    await conn.execute(
                        "DELETE FROM public.delivery_queue"
                        " WHERE communication_id = ANY(%s) AND lease_owner = 'bench'",
                        (ids,),
                    )
                    await conn.execute(
                        "UPDATE public.communications SET status = 'sent', sent_at = now()"
                        " WHERE id = ANY(%s)",
                        (ids,),
                    )
            sent += len(ids)
        elapsed = time.perf_counter() - started
    finally:
        await pool.close()
    assert sent == n, sent
    return n / elapsed


# What the dispatcher writes for a batch it sends, in the floor below: the claim marks its
# members with the batch key and stores the request as sent (lqs.db.dispatch
# .store_claimed_batches); the acknowledgement keeps one attempt per member, records the
# provider's id and answer on the communication and deletes the queue row
# (lqs.db.dispatch.record_acks).
FLOOR_CLAIM = BASELINE_CLAIM.replace("SELECT c.id,", "SELECT c.id, c.client_id,")
"""The no-op loop's claim, with each message's client (the batch is stored under it)."""

FLOOR_STORE_BATCH = """
WITH marked AS (
    UPDATE public.delivery_queue SET batch_key = %(key)s
    WHERE communication_id = ANY(%(members)s::uuid[])
)
INSERT INTO public.provider_batches (batch_key, client_id, provider, payload, members)
VALUES (%(key)s, %(client)s, 'resend', %(payload)s, %(members)s::uuid[])
"""

FLOOR_ACK = """
WITH acks AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(external_ids)s::text[], %(references)s::jsonb[])
        AS a(communication_id, external_id, external_reference)
), finished AS (
    DELETE FROM public.delivery_queue AS q
    USING acks AS a
    WHERE q.communication_id = a.communication_id AND q.lease_owner = 'bench'
    RETURNING q.communication_id, q.client_id, q.attempts
), attempts AS (
    INSERT INTO public.delivery_attempts (communication_id, client_id, attempt, provider,
        started_at, finished_at, http_status, latency_ms, outcome, recorded)
    SELECT f.communication_id, f.client_id, f.attempts, 'resend', %(started)s, now(), 200,
           greatest(0, extract(epoch FROM now() - %(started)s) * 1000), 'accepted', true
    FROM finished AS f
)
UPDATE public.communications AS c
SET status = 'sent', sent_at = now(), provider = 'resend', external_id = a.external_id,
    external_reference = a.external_reference, retry_count = 0, error_message = NULL
FROM acks AS a
WHERE c.id = a.communication_id AND c.id IN (SELECT communication_id FROM finished)
"""


def _batch_payload(rows: list[tuple[Any, ...]]) -> str:
    """The request body Resend's adapter stores for a batch: one email per member."""
    return json.dumps(
        [
            {
                "from": "lqs@bench.example",
                "to": [recipient],
                "subject": subject,
                "html": content,
                "tags": [{"name": "lqs_communication_id", "value": str(communication_id)}],
            }
            for communication_id, _, recipient, subject, content in rows
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )


async def _same_writes(url: str, n: int) -> float:
    """The no-op loop, writing what the dispatcher writes for the Resend batches it sends:
    the batch stored with the claim, then one attempt per member, the provider's id and
    answer on each communication, and the queue rows deleted; still no HTTP."""
    pool = await open_pool(url, min_size=1, max_size=2, worker=True)
    sent = 0
    try:
        started = time.perf_counter()
        while True:
            async with pool.connection() as conn:
                async with conn.transaction():
                    cur = await conn.execute(
                        FLOOR_CLAIM, {"limit": BATCH_SIZE, "owner": "bench", "lease": 60.0}
                    )
                    rows = await cur.fetchall()
                    if not rows:
                        break
                    ids = [row[0] for row in rows]
                    members = ",".join(sorted(str(i) for i in ids))
                    key = "batch-" + hashlib.sha256(members.encode()).hexdigest()[:48]
                    await conn.execute(
                        FLOOR_STORE_BATCH,
                        {"key": key, "client": rows[0][1], "payload": _batch_payload(rows),
                         "members": ids},
                    )  # fmt: skip
                sending = datetime.now(UTC)
                external_ids = [str(uuid.uuid4()) for _ in ids]
                async with conn.transaction():
                    await conn.execute(
                        FLOOR_ACK,
                        {
                            "ids": ids,
                            "external_ids": external_ids,
                            "references": [Jsonb({"id": e, "batch": key}) for e in external_ids],
                            "started": sending,
                        },
                    )
            sent += len(ids)
        elapsed = time.perf_counter() - started
    finally:
        await pool.close()
    assert sent == n, sent
    return n / elapsed


@contextmanager
def _simulator() -> Iterator[str]:
    """``lqs simulate`` in a process of its own, with the latency set per run."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "simulator.json"
        config.write_text(json.dumps(SimulatorConfig().model_dump(mode="json")))
        process = subprocess.Popen(
            [sys.executable, "-m", "lqs", "simulate", "--port", str(port),
             "--config", str(config)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        base_url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"{base_url}/_sim/messages?provider=resend").raise_for_status()
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise RuntimeError("lqs simulate did not start") from None
                    time.sleep(0.1)
            yield base_url
        finally:
            process.terminate()
            process.wait(timeout=30)


def _with_latency(seconds: float) -> SimulatorConfig:
    latency = Latency(distribution="fixed", seconds=seconds) if seconds else Latency()
    # Resend's default limit (5 requests/s, reported in ``ratelimit-remaining``, which the
    # dispatcher obeys) would be the only thing measured: bench an account with a raised one.
    return SimulatorConfig(
        resend=ResendConfig(rate_limit_per_second=1_000_000, faults=Faults(latency=latency))
    )


def run(url: str, n: int, n_latency: int, repeats: int, *, unbatched: bool = True) -> list[Row]:
    """``n`` communications per run without latency, ``n_latency`` with it.

    ``unbatched``: also send the ``n`` one request per email without latency (a context
    row, and the slowest configuration: left out of ``--quick``).
    """
    with _simulator() as simulator, SimulatorControl(simulator) as control:

        def lqs(count: int, latency: float = 0.0, *, batches: bool = True) -> float:
            control.configure(_with_latency(latency))
            control.reset()
            _prepare(url, count, simulator)
            options = DispatcherOptions(
                concurrency=CONCURRENCY,
                batch_size=BATCH_SIZE,
                timeout=TIMEOUT,
                batches=batches,
            )
            rate = asyncio.run(_lqs(url, count, options))
            _check_all_sent(url, count)
            # One accepted message per communication (a batch's members share its key).
            accepted = sum(control.idempotency_counts().values())
            assert accepted == count, accepted
            return rate

        def baseline() -> float:
            _prepare(url, n, simulator)
            rate = asyncio.run(_baseline(url, n))
            _check_all_sent(url, n)
            return rate

        def same_writes() -> float:
            _prepare(url, n, simulator)
            rate = asyncio.run(_same_writes(url, n))
            _check_all_sent(url, n)
            _check_same_writes(url, n)
            return rate

        print(f"dispatch: {n:,} communications, no injected latency, {repeats} repeats")
        plain_configs = {
            "no-op loop": baseline,
            SAME_WRITES: same_writes,
            "LQS": lambda: lqs(n),
        }
        if unbatched:
            plain_configs["LQS, one request per email"] = lambda: lqs(n, batches=False)
        plain = interleave(repeats, plain_configs)
        print(
            f"dispatch: {n_latency:,} communications, concurrency {CONCURRENCY}, "
            f"latency {', '.join(_ms(s) for s in LATENCIES)}, {repeats} repeats"
        )
        configs = {_ms(s): lambda s=s: lqs(n_latency, s, batches=False) for s in LATENCIES}
        configs[f"{_ms(0.1)}, batches"] = lambda: lqs(n_latency, 0.1)
        slow = interleave(repeats, configs)
    setting = f"concurrency {CONCURRENCY}, claims of {BATCH_SIZE}"
    rows = [
        Row(
            f"dispatch, no injected latency ({setting}; Resend batches, the default)",
            plain["LQS"],
            plain["no-op loop"],
            "comms/s",  # context: the no-op loop writes far less (the goal is the floor's)
        ),
        Row(
            f"dispatch, no injected latency ({setting}; Resend batches, the default) "
            "against the same writes",
            plain["LQS"],
            plain[SAME_WRITES],
            "comms/s",
            0.85,
        ),
    ]
    if unbatched:
        rows.append(
            Row(
                "dispatch, no injected latency, one request per email (context)",
                plain["LQS, one request per email"],
                plain["no-op loop"],
                "comms/s",
            )
        )
    for seconds in LATENCIES:
        rows.append(
            Row(
                f"dispatch, {_ms(seconds)} provider latency, one request per email "
                f"(concurrency {CONCURRENCY})",
                slow[_ms(seconds)],
                Series.computed("concurrency / latency", CONCURRENCY / seconds),
                "comms/s",
                0.80 if seconds == 0.1 else None,
            )
        )
    rows.append(
        Row(
            f"dispatch, {_ms(0.1)} provider latency, Resend batches (the default; context)",
            slow[f"{_ms(0.1)}, batches"],
            Series.computed("concurrency / latency", CONCURRENCY / 0.1),
            "comms/s",
        )
    )
    return rows


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"
