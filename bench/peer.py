"""The processor's peers: job queues doing one lead per job, on the same PostgreSQL server.

PgQueuer (https://github.com/janbjorge/pgqueuer) is a Postgres job queue for asyncio: a
``QueueManager`` claims a batch with ``FOR UPDATE SKIP LOCKED`` (status ``picked``), runs
each job's entrypoint as a task and moves finished jobs to its log table in batches. With
an entrypoint that does nothing, what is measured is the queue's own cost per job.

The same-work jobs (here on PgQueuer, in bench/celery_peer.py on Celery) process one lead
each as LQS does, with LQS's own code: :func:`lead_work` scores the lead with the
client's rules, plans its messages and renders them with LQS's sandboxed renderer, and
the job writes the rows LQS writes (the lead's outcome, one ``communications`` row per
message and its ``delivery_queue`` row) in one transaction.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any
from uuid import UUID

import asyncpg
import psycopg
from pgqueuer import AsyncpgDriver, Queries, QueueManager
from pgqueuer.models import Job
from pgqueuer.types import QueueExecutionMode
from psycopg import conninfo
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from lqs.db.clients import Client
from lqs.db.communications import NewCommunication
from lqs.db.leads import ClaimedLead, LeadOutcome
from lqs.domain.clients import ClientSettings, parse_client_settings
from lqs.domain.default_rules import default_rules
from lqs.domain.notifications import plan_messages
from lqs.domain.scoring import RuleSet, breakdown_to_json, parse_rules, score_lead
from lqs.domain.templates import TemplateRenderer
from lqs.domain.vocabulary import CommunicationStatus
from lqs.worker.processor import template_for, template_variables

PGQUEUER_VERSION = version("pgqueuer")
ENTRYPOINT = "bench_noop"
SAME_WORK_ENTRYPOINT = "bench_process_lead"
SAME_WORK_POOL = 2
"""Connections of the same-work jobs' pool: as many as LQS's processor has (1 process)."""
TIMEOUT = 300.0
"""Seconds one drain may take before it is abandoned as stuck."""


class PeerError(RuntimeError):
    """PgQueuer could not be installed or did not finish its jobs."""


@dataclass(frozen=True)
class ClientConfig:
    """A client as the processor sees it: its settings and scoring rules, parsed once."""

    client: Client
    settings: ClientSettings
    rules: RuleSet

    @classmethod
    def parse(cls, client: Client) -> ClientConfig:
        settings = parse_client_settings(client.settings)
        raw = settings.scoring_rules
        return cls(client, settings, default_rules() if raw is None else parse_rules(raw))


@dataclass(frozen=True)
class LeadRows:
    """What LQS writes for one processed lead, as statement parameters (jsonb as text)."""

    lead: tuple[Any, ...]
    """``LEAD_OUTCOME``'s parameters: status, score, grade, score_breakdown, id."""
    communications: list[tuple[Any, ...]]
    """``INSERT_COMMUNICATION``'s parameters, one tuple per message."""
    queue: list[tuple[Any, ...]]
    """``INSERT_DELIVERY``'s parameters, one tuple per pending message."""


CLIENT = "SELECT id, name, slug, settings FROM public.clients WHERE id = %s"
LEAD = "SELECT l.* FROM public.leads AS l WHERE l.id = %s AND l.status = 'queued' FOR UPDATE"
LEAD_OUTCOME = """
UPDATE public.leads SET status = %s, score = %s, grade = %s, score_breakdown = %s::jsonb,
       error_message = NULL, processed_at = now()
WHERE id = %s
"""
INSERT_COMMUNICATION = """
INSERT INTO public.communications (id, lead_id, client_id, type, recipient, subject, content,
    status, template_id, template_variables, priority, campaign_id, consent_status,
    compliance_notes, error_message)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s)
"""
INSERT_DELIVERY = """
INSERT INTO public.delivery_queue (communication_id, client_id, priority, to_lead)
VALUES (%s, %s, %s, %s)
"""


def lead_work(
    lead: ClaimedLead, config: ClientConfig, renderer: TemplateRenderer
) -> tuple[LeadOutcome, list[NewCommunication]]:
    """Score, plan and render one lead with LQS's own functions, as its processor does
    (the bench's clients have no suppressions, push subscriptions or stored templates).

    Raises:
        PeerError: a message would not be sent (the bench's settings do not make one).
    """
    fields = lead.as_mapping()
    result = score_lead(fields, config.rules)
    outcome = LeadOutcome(
        lead.id, result.outcome, result.score, result.grade,
        breakdown_to_json(result.breakdown), None,
    )  # fmt: skip
    communications = []
    for message in plan_messages(outcome.status, config.settings, fields):
        template, template_ref = template_for(config.client.id, message.template_id, {})
        if message.recipient is None or message.rejection is not None or template is None:
            raise PeerError(f"the bench's settings send no message to {message.recipient}")
        variables = template_variables(lead, outcome, config.client)
        rendered = renderer.render(template, variables)
        communications.append(
            NewCommunication(
                lead_id=lead.id, client_id=lead.client_id, type=message.channel.value,
                recipient=message.recipient, subject=rendered.subject, content=rendered.content,
                status=CommunicationStatus.PENDING, template_id=template_ref,
                template_variables=variables, priority=message.priority,
                campaign_id=message.campaign_id, consent_status=message.consent_status.value,
                compliance_notes=None, error_message=None, to_lead=message.to_lead,
            )
        )  # fmt: skip
    return outcome, communications


def lead_rows(outcome: LeadOutcome, communications: list[NewCommunication]) -> LeadRows:
    """The parameters that write ``outcome`` and ``communications`` (ids made here)."""
    lead = (
        outcome.status.value, outcome.score, outcome.grade,
        json.dumps(outcome.score_breakdown), outcome.lead_id,
    )  # fmt: skip
    rows, queue = [], []
    for c in communications:
        communication_id = uuid.uuid4()
        rows.append(
            (
                communication_id, c.lead_id, c.client_id, c.type, c.recipient, c.subject,
                c.content, c.status, c.template_id, json.dumps(c.template_variables),
                c.priority, c.campaign_id, c.consent_status, c.compliance_notes,
                c.error_message,
            )
        )  # fmt: skip
        queue.append((communication_id, c.client_id, c.priority, c.to_lead))
    return LeadRows(lead, rows, queue)


def client_config(row: tuple[Any, ...] | None, client_id: object) -> ClientConfig:
    if row is None:
        raise PeerError(f"no client {client_id}")
    return ClientConfig.parse(Client(*row))


async def process_lead(
    conn: psycopg.AsyncConnection,
    lead_id: UUID,
    config: Callable[[UUID], ClientConfig],
    renderer: TemplateRenderer,
) -> None:
    """One same-work job: lock the lead, do LQS's work, write its rows, commit."""
    async with conn.transaction():
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(LEAD, (lead_id,))
            row = await cur.fetchone()
        if row is None:
            raise PeerError(f"lead {lead_id} is not queued")
        lead = ClaimedLead.from_row(row)
        rows = lead_rows(*lead_work(lead, config(lead.client_id), renderer))
        async with conn.cursor() as cur:
            await cur.execute(LEAD_OUTCOME, rows.lead)
            await cur.executemany(INSERT_COMMUNICATION, rows.communications)
            await cur.executemany(INSERT_DELIVERY, rows.queue)


def process_lead_sync(
    conn: psycopg.Connection,
    lead_id: UUID,
    config: Callable[[UUID], ClientConfig],
    renderer: TemplateRenderer,
) -> None:
    """:func:`process_lead` on a synchronous connection (Celery's tasks)."""
    with conn.transaction():
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(LEAD, (lead_id,))
            row = cur.fetchone()
        if row is None:
            raise PeerError(f"lead {lead_id} is not queued")
        lead = ClaimedLead.from_row(row)
        rows = lead_rows(*lead_work(lead, config(lead.client_id), renderer))
        with conn.cursor() as cur:
            cur.execute(LEAD_OUTCOME, rows.lead)
            cur.executemany(INSERT_COMMUNICATION, rows.communications)
            cur.executemany(INSERT_DELIVERY, rows.queue)


def _connect_kwargs(url: str) -> dict[str, Any]:
    """asyncpg's keyword arguments for a libpq URL or ``key=value`` string.

    Raises:
        PeerError: the URL uses a parameter asyncpg is not given here.
    """
    params = conninfo.conninfo_to_dict(url)
    kwargs: dict[str, Any] = {}
    for key, value in params.items():
        if key == "dbname":
            kwargs["database"] = value
        elif key in ("host", "user", "password"):
            kwargs[key] = value
        elif key == "port":
            kwargs["port"] = int(str(value))
        elif key == "sslmode":
            kwargs["ssl"] = value
        elif key == "connect_timeout":
            kwargs["timeout"] = float(str(value))
        elif key == "application_name":
            kwargs["server_settings"] = {"application_name": str(value)}
        else:
            raise PeerError(f"the database URL's {key!r} is not passed on to asyncpg")
    return kwargs


async def _install(queries: Queries, database: str) -> None:
    """Install PgQueuer's tables once per database, check them, and empty them."""
    try:
        if not await queries.schema_is_installed():
            await queries.install()
    except Exception as exc:
        raise PeerError(
            f"installing PgQueuer's schema into database {database!r} failed: {exc}"
        ) from exc
    try:
        await QueueManager(queries).verify_structure()
    except RuntimeError as exc:
        raise PeerError(f"PgQueuer's schema in database {database!r} is incomplete: {exc}") from exc
    await queries.clear_queue()
    await queries.clear_queue_log()
    await queries.clear_statistics_log()


async def _enqueue(url: str, entrypoint: str, payloads: list[bytes | None]) -> None:
    """Install PgQueuer's schema (emptied) and enqueue one job per payload: one statement
    for all, not timed, as the peer's enqueue is not what is compared."""
    kwargs = _connect_kwargs(url)
    setup = await asyncpg.connect(**kwargs)
    try:
        queries = Queries(AsyncpgDriver(setup))
        await _install(queries, str(kwargs.get("database")))
        await queries.enqueue([entrypoint] * len(payloads), payloads, [0] * len(payloads))
        await setup.execute(f"ANALYZE {queries.qbe.settings.qualified.queue_table}")
    finally:
        await setup.close()


async def _run(
    url: str,
    n: int,
    batch_size: int,
    time_limit: float,
    entrypoint: str,
    job: Callable[[Job], Any],
) -> float:
    """Jobs per second of one ``QueueManager`` draining the ``n`` jobs enqueued."""
    connection = await asyncpg.connect(**_connect_kwargs(url))
    try:
        queries = Queries(AsyncpgDriver(connection))
        manager = QueueManager(queries)
        done = 0

        @manager.entrypoint(entrypoint)
        async def counted(task: Job) -> None:
            nonlocal done
            await job(task)
            done += 1

        # Drain mode returns once the queue is empty and every job is logged as finished
        # (the status buffer is flushed on the way out); the clock includes run()'s start-up
        # checks of the schema, a few catalogue queries.
        started = time.perf_counter()
        try:
            async with asyncio.timeout(time_limit):
                await manager.run(batch_size=batch_size, mode=QueueExecutionMode.drain)
        except TimeoutError as exc:
            raise PeerError(
                f"PgQueuer ran {done:,} of {n:,} jobs in {time_limit:.0f} s, then was stopped"
            ) from exc
        elapsed = time.perf_counter() - started
        left = sum(row.count for row in await queries.queue_size())
    finally:
        await connection.close()
    if done != n or left:
        raise PeerError(f"PgQueuer ran {done:,} of {n:,} jobs and left {left:,} in its queue")
    return n / elapsed


async def _noop(job: Job) -> None:
    pass


async def _drain(url: str, n: int, batch_size: int, time_limit: float) -> float:
    await _enqueue(url, ENTRYPOINT, [None] * n)
    return await _run(url, n, batch_size, time_limit, ENTRYPOINT, _noop)


async def _drain_same_work(url: str, batch_size: int, time_limit: float) -> float:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute("SELECT id FROM public.leads WHERE status = 'queued' ORDER BY id")
        lead_ids = [row[0] for row in await cur.fetchall()]
        cur = await conn.execute("SELECT id, name, slug, settings FROM public.clients")
        configs = {row[0]: ClientConfig.parse(Client(*row)) for row in await cur.fetchall()}
    await _enqueue(url, SAME_WORK_ENTRYPOINT, [lead_id.bytes for lead_id in lead_ids])
    renderer = TemplateRenderer()
    # A plain pool: LQS's (lqs.db.pool) checks each connection it hands out, a round trip
    # per job here where the processor pays it once per batch.
    pool = AsyncConnectionPool(url, min_size=SAME_WORK_POOL, max_size=SAME_WORK_POOL, open=False)
    await pool.open(wait=True)
    try:

        async def same_work(job: Job) -> None:
            assert job.payload is not None
            async with pool.connection() as conn:
                await process_lead(conn, UUID(bytes=job.payload), configs.__getitem__, renderer)

        return await _run(
            url, len(lead_ids), batch_size, time_limit, SAME_WORK_ENTRYPOINT, same_work
        )
    finally:
        await pool.close()


def pgqueuer_rate(url: str, n: int, batch_size: int = 100, timeout: float = TIMEOUT) -> float:
    """No-op jobs per second: PgQueuer (``QueueManager`` over ``AsyncpgDriver``, one
    process) draining ``n`` jobs enqueued beforehand, ``batch_size`` per dequeue.

    Installs PgQueuer's schema into the database at ``url`` on first use and empties its
    tables before every run.

    Raises:
        PeerError: the schema could not be installed, or the jobs were not all done
            within ``timeout`` seconds.
    """
    return asyncio.run(_drain(url, n, batch_size, timeout))


def pgqueuer_same_work_rate(url: str, batch_size: int = 100, timeout: float = TIMEOUT) -> float:
    """Leads per second: PgQueuer (one process) running one job per queued lead of the
    database at ``url`` (enqueued beforehand), each doing LQS's work for its lead
    (:func:`process_lead`) on a pool of :data:`SAME_WORK_POOL` psycopg connections.

    Raises:
        PeerError: as :func:`pgqueuer_rate`, or a job found its lead not queued.
    """
    return asyncio.run(_drain_same_work(url, batch_size, timeout))
