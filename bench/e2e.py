"""End to end: leads posted over HTTP until their email is accepted by the provider, and
until the provider's delivery webhook for it is applied, with everything running at once.

``lqs simulate``, ``lqs serve`` and ``lqs worker`` (the daemon; default settings but for a
short retry backoff) run as child processes in one process group against the scratch
database, as ``lqs demo`` runs them: one client whose email goes through the simulator's
Resend API, with a webhook secret registered in the simulator's ``callbacks.webhooks`` so
that every accepted email comes back as signed ``email.sent`` and ``email.delivered``
events to ``POST /webhooks/resend/…``.
Every posted lead qualifies and sends one email (to the client's sales address).

The baseline is a DB-only pipeline of the same shape in one process: COPY the leads in
chunks, claim them in batches (``FOR UPDATE SKIP LOCKED``), mark them processed and write
one communication and one queue row each, then claim the queue with a lease and
acknowledge it (delete the queue rows, mark the communications sent). It writes tables
built ``LIKE`` the real ones (same columns, defaults, checks and indexes) in a schema of
its own, so that the running worker never sees its rows.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from bench.common import (
    Row,
    Section,
    Series,
    backend_cpu_seconds,
    backend_cpu_used,
    free_port,
    interleave,
    process_cpu_seconds,
)
from lqs.cli.processes import ProcessGroup
from lqs.db.clients import create_api_key, create_client
from lqs.simulator import (
    CallbacksConfig,
    ResendConfig,
    SimulatorConfig,
    SimulatorControl,
    WebhookRegistration,
)

CHUNK = 1000
"""Leads per ``POST /v1/leads/batch`` (the endpoint's maximum)."""
PROCESS_BATCH = 100
"""The baseline's claims, as the worker's defaults: leads per processing batch …"""
DISPATCH_BATCH = 100
"""… and communications per dispatcher claim."""
CLIENT_SLUG = "bench-e2e"
POLL = 0.05
"""Seconds between the bench's looks at the database while it waits."""

_LEAD_COLUMNS = ("email", "first_name", "last_name", "job_title", "company_name",
                 "company_domain", "company_size", "country", "source",
                 "consent_status")  # fmt: skip

# One email to the client's sales address per qualified lead, and nothing for the others.
_NOTIFICATIONS = {
    "qualified": [{"channel": "email", "to": "client", "template": "lead_qualified"}],
    "nurture": [],
    "disqualified": [],
}


def qualified_leads(n: int, tag: str) -> list[dict[str, Any]]:
    """``n`` distinct leads that the default rules qualify (company email, senior title,
    a company of 50 to 10,000 people, a company website), ``tag`` keeping runs apart."""
    return [
        {
            "email": f"lead{i}.{tag}@company{i % 997}.example",
            "first_name": f"First{i}",
            "last_name": f"Last{i}",
            "job_title": ("CEO", "VP Sales", "Head of Operations", "Director of IT")[i % 4],
            "company_name": f"Company {i % 997}",
            "company_domain": f"company{i % 997}.example",
            "company_size": 50 + (i * 7) % 5000,
            "country": ("US", "GB", "DE", "FR")[i % 4],
            "source": "benchmark",
            "consent_status": "granted",
        }
        for i in range(n)
    ]


# ---------------------------------------------------------------------- the running system


@dataclass(frozen=True)
class Pipeline:
    """The simulator, the API and the worker daemon, running against one database."""

    database: str
    api: str
    simulator: str
    api_key: str
    client_id: UUID
    logs: Path
    processes: ProcessGroup

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def check(self) -> None:
        """Raises RuntimeError if one of the processes has exited."""
        self.processes.check()

    def reset(self) -> None:
        """Forget every lead (with its communications, attempts and events) and every
        simulator record, so that each run starts from the same empty tables."""
        with psycopg.connect(self.database, autocommit=True) as conn:
            conn.execute("TRUNCATE public.leads, public.provider_batches CASCADE")
            # Every run planned from the same statistics (of empty tables), not from
            # whatever the previous run left or autovacuum last saw.
            conn.execute("ANALYZE public.leads, public.communications, public.delivery_queue")
        with SimulatorControl(self.simulator) as control:
            control.reset()

    def wait_until(
        self, done: Callable[[psycopg.Connection[Any]], bool], within: float, what: str
    ) -> None:
        """Poll ``done`` every :data:`POLL` seconds until it holds.

        Raises RuntimeError if a process exits or ``within`` seconds pass first.
        """
        deadline = time.monotonic() + within
        with psycopg.connect(self.database, autocommit=True) as conn:
            while not done(conn):
                self.check()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{what}: not done after {within:g} s")
                time.sleep(POLL)

    def post_batches(self, leads: Sequence[dict[str, Any]]) -> None:
        """Post ``leads`` in chunks of :data:`CHUNK`, one request after the other."""
        with httpx.Client(base_url=self.api, headers=self.headers, timeout=120) as http:
            for start in range(0, len(leads), CHUNK):
                answer = http.post("/v1/leads/batch", json={"leads": leads[start : start + CHUNK]})
                answer.raise_for_status()

    def warm_up(self, n: int = 200) -> None:
        """Send ``n`` leads all the way through once (imports, caches, connections)."""
        self.post_batches(qualified_leads(n, "warm-up"))
        self.wait_until(lambda conn: _counts(conn)[1] >= n, 60, "warm-up")
        self.reset()


async def _make_client(url: str, api_base: str, sim_base: str) -> tuple[UUID, str, str, str]:
    """The bench client: its id, API key, Resend key and Resend webhook secret."""
    provider_key = "re_bench_" + secrets.token_hex(8)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    async with await AsyncConnection.connect(url, autocommit=True) as conn:
        # A bench run before this one on the same database left its client behind.
        await conn.execute("DELETE FROM public.clients WHERE slug = %s", (CLIENT_SLUG,))
        client = await create_client(conn, "Bench end to end", CLIENT_SLUG, {})
        _, api_key = await create_api_key(conn, client.id, "bench", 10_000_000)
        delivery = {
            "email": {"primary": "resend"},
            "resend": {
                "api_key": provider_key,
                "from_address": f"leads@{CLIENT_SLUG}.example",
                "base_url": sim_base,
                "webhook_secret": secret,
            },
        }
        settings = {
            "notification_email": f"sales@{CLIENT_SLUG}.example",
            "notifications": _NOTIFICATIONS,
            "delivery": delivery,
        }
        await conn.execute(
            "UPDATE public.clients SET settings = %s WHERE id = %s", (Jsonb(settings), client.id)
        )
    return client.id, api_key, provider_key, secret


def _simulator_config(provider_key: str, secret: str, hook: str) -> SimulatorConfig:
    # Resend's default limit (5 requests/s, which the dispatcher obeys) would be the only
    # thing measured: bench an account with a raised one, as bench/dispatch.py does. No
    # faults, no duplicate events: every email is accepted once and delivered once.
    return SimulatorConfig(
        seed=7,
        resend=ResendConfig(api_keys=[provider_key], rate_limit_per_second=1_000_000),
        callbacks=CallbacksConfig(
            webhooks=[
                WebhookRegistration(
                    provider="resend", api_key=provider_key, url=hook, secret=secret
                )
            ]
        ),
    )


def _wait_ready(url: str, processes: ProcessGroup, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        processes.check()
        try:
            if httpx.get(url, timeout=5).status_code < 500:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {within:g} s")
        time.sleep(0.1)


@contextmanager
def running_pipeline(url: str) -> Iterator[Pipeline]:
    """Create the bench client on ``url`` (a scratch database), start the simulator, the
    API and the worker daemon, and stop them all on the way out, whatever happens.

    The processes' output goes to log files in a temporary directory, removed afterwards
    unless something failed (its path is then printed).
    """
    logs = Path(tempfile.mkdtemp(prefix="lqs-bench-"))
    try:
        api_port, sim_port = free_port(), free_port()
        api_base, sim_base = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{sim_port}"
        client_id, api_key, provider_key, secret = asyncio.run(
            _make_client(url, api_base, sim_base)
        )
        hook = f"{api_base}/webhooks/resend/{client_id}"
        config = _simulator_config(provider_key, secret, hook)
        (logs / "simulator.json").write_text(json.dumps(config.model_dump(mode="json")))
        env = {k: v for k, v in os.environ.items() if not k.startswith("LQS_")}
        env.update(
            LQS_DATABASE_URL=url,
            LQS_PUBLIC_BASE_URL=api_base,
            # Nothing should be retried; if something is, a retry a second later keeps the
            # run short (the default waits 30 s) and the retry count says so.
            LQS_DISPATCH_RETRY_BASE_DELAY="0.5",
            LQS_DISPATCH_RETRY_MAX_DELAY="1",
            PYTHONUNBUFFERED="1",
        )
        processes = ProcessGroup(logs, env)
        try:
            processes.start(
                "simulator", "simulate", "--port", str(sim_port), "--config", "simulator.json"
            )
            processes.start("api", "serve", "--port", str(api_port))
            processes.start("worker", "worker")
            _wait_ready(f"{sim_base}/_sim/messages?provider=resend", processes, 60)
            _wait_ready(f"{api_base}/healthz", processes, 60)
            yield Pipeline(url, api_base, sim_base, api_key, client_id, logs, processes)
        finally:
            killed = processes.stop()
        if killed:
            raise RuntimeError(f"had to SIGKILL: {', '.join(killed)}")
    except BaseException:
        print(f"logs of the simulator, the API and the worker: {logs}", file=sys.stderr)
        raise
    shutil.rmtree(logs, ignore_errors=True)


# ---------------------------------------------------------------------- LQS


def _counts(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    """(communications accepted by the provider, communications delivered)."""
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE sent_at IS NOT NULL AND status IN ('sent', 'delivered')),"
        " count(*) FILTER (WHERE status = 'delivered') FROM public.communications"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _check_settled(url: str, n: int) -> int:
    """Every lead qualified with one delivered email; returns the retries made."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM public.leads WHERE status = 'qualified'),"
            " (SELECT count(*) FROM public.leads),"
            " count(*) FILTER (WHERE status = 'delivered'), count(*),"
            " coalesce(sum(retry_count), 0) FROM public.communications"
        ).fetchone()
    assert row is not None
    assert tuple(row[:4]) == (n, n, n, n), row
    return int(row[4])


@dataclass(frozen=True)
class CpuUse:
    """CPU milliseconds per delivered lead: LQS's API, its worker, their PostgreSQL
    backends (None if the server is not on this host)."""

    api: float
    worker: float
    postgres: float | None

    @property
    def total(self) -> float | None:
        return None if self.postgres is None else self.api + self.worker + self.postgres


class _CpuMeter:
    """The CPU seconds the API, the worker (with their children) and the database's
    backends have used since it was made."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pids = {name: proc.pid for name, proc in pipeline.processes.procs}
        self.database = pipeline.database
        self.start = self._processes()
        self.backends = backend_cpu_seconds(self.database)

    def _processes(self) -> dict[str, float]:
        return {name: process_cpu_seconds(self.pids[name]) for name in ("api", "worker")}

    def per_lead(self, n: int) -> CpuUse:
        now = self._processes()
        after = backend_cpu_seconds(self.database)
        used = backend_cpu_used(self.backends, after)
        postgres = None if used is None else used * 1000 / n
        api, worker = ((now[k] - self.start[k]) * 1000 / n for k in ("api", "worker"))
        return CpuUse(api, worker, postgres)


def _lqs(pipeline: Pipeline, n: int, tag: str) -> tuple[float, float, CpuUse]:
    """Leads/s from the first POST to all accepted, and to all delivered webhooks applied;
    the CPU each delivered lead took."""
    pipeline.reset()
    leads = qualified_leads(n, tag)
    within = 120 + n / 50
    with psycopg.connect(pipeline.database, autocommit=True) as conn:
        meter = _CpuMeter(pipeline)
        started = time.perf_counter()
        pipeline.post_batches(leads)
        accepted_at: float | None = None
        deadline = time.monotonic() + within
        while True:
            accepted, delivered = _counts(conn)
            now = time.perf_counter()
            if accepted_at is None and accepted >= n:
                accepted_at = now
            if delivered >= n:
                break
            pipeline.check()
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"end to end: {accepted:,} of {n:,} accepted, {delivered:,} delivered "
                    f"after {within:g} s"
                )
            time.sleep(POLL)
        cpu = meter.per_lead(n)
    assert accepted_at is not None
    retries = _check_settled(pipeline.database, n)
    if retries:
        print(f"    ({retries} retries)", flush=True)
    return n / (accepted_at - started), n / (now - started), cpu


# ---------------------------------------------------------------------- the baseline

_BASELINE_SCHEMA = """
DROP SCHEMA IF EXISTS bench_e2e CASCADE;
CREATE SCHEMA bench_e2e;
CREATE TABLE bench_e2e.leads (LIKE public.leads INCLUDING ALL);
CREATE TABLE bench_e2e.communications (LIKE public.communications INCLUDING ALL);
CREATE TABLE bench_e2e.delivery_queue (LIKE public.delivery_queue INCLUDING ALL);
CREATE TRIGGER trigger_leads_updated_at BEFORE UPDATE ON bench_e2e.leads
    FOR EACH ROW EXECUTE FUNCTION public.lqs_set_updated_at();
CREATE TRIGGER trigger_communications_updated_at BEFORE UPDATE ON bench_e2e.communications
    FOR EACH ROW EXECUTE FUNCTION public.update_communications_updated_at();
"""

_BASELINE_CLAIM_LEADS = """
SELECT id FROM bench_e2e.leads WHERE status = 'queued'
ORDER BY received_at, id LIMIT %s FOR UPDATE SKIP LOCKED
"""

# The processed leads' emails (a subject and an HTML body of about 600 bytes, as the
# default template renders) and their queue rows.
_BASELINE_OUTBOX = """
WITH processed AS (
    UPDATE bench_e2e.leads SET status = 'qualified', score = 75, grade = 'B',
                               processed_at = now()
    WHERE id = ANY(%(ids)s)
    RETURNING id, client_id, first_name, job_title, company_name
), made AS (
    INSERT INTO bench_e2e.communications (lead_id, client_id, type, recipient, subject,
                                          content, template_id, consent_status)
    SELECT p.id, p.client_id, 'email', 'sales@bench-e2e.example',
           'New qualified lead: ' || p.first_name || ' at ' || p.company_name,
           '<html><body><h1>New qualified lead</h1><p>' || p.first_name || ' ('
               || p.job_title || ', ' || p.company_name || ') scored 75.</p>'
               || repeat('<p>Scoring breakdown line for this lead.</p>', 12)
               || '</body></html>',
           'lead_qualified', 'granted'
    FROM processed AS p
    RETURNING id, client_id
)
INSERT INTO bench_e2e.delivery_queue (communication_id, client_id, priority)
SELECT id, client_id, 5 FROM made
"""

_BASELINE_CLAIM_QUEUE = """
UPDATE bench_e2e.delivery_queue AS q
SET lease_owner = 'bench', lease_expires_at = now() + interval '60 seconds',
    next_attempt_at = now() + interval '60 seconds'
WHERE q.communication_id = ANY(ARRAY(
    SELECT d.communication_id FROM bench_e2e.delivery_queue AS d
    WHERE d.next_attempt_at <= now()
    ORDER BY d.priority, d.next_attempt_at
    LIMIT %s
    FOR UPDATE SKIP LOCKED
))
RETURNING q.communication_id
"""

_BASELINE_ACK = """
WITH acked AS (
    DELETE FROM bench_e2e.delivery_queue
    WHERE communication_id = ANY(%(ids)s) AND lease_owner = 'bench'
    RETURNING communication_id
)
UPDATE bench_e2e.communications SET status = 'sent', sent_at = now(), provider = 'resend'
WHERE id IN (SELECT communication_id FROM acked)
"""


def _baseline(url: str, client_id: UUID, n: int, tag: str) -> float:
    """Leads/s of the DB-only pipeline: COPY in chunks, process in batches, ack in batches."""
    leads = qualified_leads(n, tag)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_BASELINE_SCHEMA)
        copy_sql = (
            "COPY bench_e2e.leads (client_id, dedupe_key, "
            + ", ".join(_LEAD_COLUMNS)
            + ") FROM STDIN"
        )
        started = time.perf_counter()
        for start in range(0, n, CHUNK):
            with conn.transaction(), conn.cursor() as cur, cur.copy(copy_sql) as copy:
                for lead in leads[start : start + CHUNK]:
                    copy.write_row(
                        [client_id, "email:" + lead["email"], *(lead[c] for c in _LEAD_COLUMNS)]
                    )
        processed = 0
        while True:
            with conn.transaction():
                ids = [r[0] for r in conn.execute(_BASELINE_CLAIM_LEADS, (PROCESS_BATCH,))]
                if not ids:
                    break
                conn.execute(_BASELINE_OUTBOX, {"ids": ids})
            processed += len(ids)
        acked = 0
        while True:
            with conn.transaction():
                ids = [r[0] for r in conn.execute(_BASELINE_CLAIM_QUEUE, (DISPATCH_BATCH,))]
            if not ids:
                break
            with conn.transaction():
                conn.execute(_BASELINE_ACK, {"ids": ids})
            acked += len(ids)
        elapsed = time.perf_counter() - started
    assert processed == acked == n, (processed, acked)
    return n / elapsed


# ---------------------------------------------------------------------- the section

CPU_GOAL_MS = 2.5
"""The most CPU milliseconds one delivered lead may cost, all LQS processes and their
PostgreSQL backends together."""
DELIVERED_GOAL = 0.25
"""Leads delivered (webhooks applied) per second, as a share of the DB-only pipeline's."""


def _median(series: Series) -> str:
    return "n/a" if not series.values else f"{series.median:.2f}"


def run(url: str, *, n: int, repeats: int) -> Section:
    """``n`` leads per run, ``repeats`` runs of LQS interleaved with the baseline."""
    delivered = Series("LQS → delivered")
    cpu = {part: Series(part, decimals=2) for part in ("all", "API", "worker", "PostgreSQL")}
    runs = 0

    with running_pipeline(url) as pipeline:
        pipeline.warm_up()

        def lqs() -> float:
            nonlocal runs
            runs += 1
            to_accepted, to_delivered, used = _lqs(pipeline, n, f"r{runs}")
            delivered.values.append(to_delivered)
            cpu["API"].values.append(used.api)
            cpu["worker"].values.append(used.worker)
            if used.postgres is not None and used.total is not None:
                cpu["PostgreSQL"].values.append(used.postgres)
                cpu["all"].values.append(used.total)
            postgres = "n/a" if used.postgres is None else f"{used.postgres:.2f}"
            print(
                f"  LQS → delivered: {to_delivered:,.0f}; CPU ms per lead: API {used.api:.2f},"
                f" worker {used.worker:.2f}, PostgreSQL {postgres}",
                flush=True,
            )
            return to_accepted

        print(f"end to end: {n:,} leads, {repeats} interleaved repeats (logs in {pipeline.logs})")
        series = interleave(
            repeats,
            {
                "DB-only pipeline": lambda: _baseline(url, pipeline.client_id, n, "baseline"),
                "LQS → accepted": lqs,
            },
        )
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS bench_e2e CASCADE")
    baseline, accepted = series["DB-only pipeline"], series["LQS → accepted"]
    return Section(
        "End to end",
        rows=[
            Row("End to end: intake → provider accepted", accepted, baseline, "leads/s"),
            Row(
                "End to end: intake → delivery webhook applied",
                delivered,
                baseline,
                "leads/s",
                DELIVERED_GOAL,
            ),
            Row(
                "CPU per delivered lead: API, worker and their PostgreSQL backends",
                cpu["all"],
                None,
                "ms",
                CPU_GOAL_MS,
                at_most=True,
                skipped=None if cpu["all"].values else "the PostgreSQL server is not on this host",
            ),
        ],
        markdown=[
            f"{n:,} leads posted with `POST /v1/leads/batch` ({CHUNK:,} per request, one "
            "after the other) to `lqs serve`, with `lqs worker` (the daemon, default "
            "settings but for a short retry backoff) and `lqs simulate` running beside it; "
            "every lead qualifies and sends one email through the simulator's Resend API "
            "(rate limit raised, no faults), which then POSTs a signed `email.sent` and "
            "`email.delivered` webhook for it: two requests to the API per email, each "
            "verified and applied in a transaction of its own. "
            "The rates run from the first POST until the database shows every email "
            "accepted by the provider (`sent`), and until it shows every one `delivered` "
            f"(polled every {POLL * 1000:.0f} ms).",
            "",
            "*DB-only pipeline*: the same leads COPYed in the same chunks, claimed "
            f"{PROCESS_BATCH} at a time with `FOR UPDATE SKIP LOCKED`, marked processed with "
            "one communication and one queue row each, then the queue claimed with a lease "
            f"{DISPATCH_BATCH} at a time and acknowledged; one process, one stage after the "
            "other, in tables built `LIKE` the real ones.",
            "",
            "*CPU per delivered lead*: user and system CPU of `lqs serve` and `lqs worker`"
            " (with any child processes, from /proc through psutil) and of every PostgreSQL"
            " backend connected to the database (from pg_stat_activity's pids), from the first"
            " POST until the last delivery webhook is applied, divided by the leads; the"
            " simulator (the providers' side) is not counted. Medians per run: API"
            f" {_median(cpu['API'])} ms, worker {_median(cpu['worker'])} ms, PostgreSQL"
            f" {_median(cpu['PostgreSQL'])} ms.",
        ],
    )
