"""SQL for communications: record them, list them, show one's timeline, re-drive them.

A communication is recorded (``pending``, ``rejected`` or ``failed``) in the seed's table
in the same statement that queues the pending ones for delivery.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from psycopg import AsyncConnection
from psycopg.rows import args_row, dict_row
from psycopg.types.json import Jsonb

from lqs.db.connection import notify
from lqs.domain.notifications import MessageKey, message_key

COMMUNICATIONS_PENDING_CHANNEL = "lqs_communications_pending"
"""NOTIFY channel: communications were queued for delivery; the dispatcher wakes."""


@dataclass(frozen=True)
class NewCommunication:
    """A row for the seed's ``communications`` table, as the processor decided it."""

    lead_id: UUID
    client_id: UUID
    type: str
    recipient: str
    subject: str | None
    content: str | None
    status: str
    template_id: str
    template_variables: dict[str, Any]
    priority: int
    campaign_id: str | None
    consent_status: str
    compliance_notes: str | None
    error_message: str | None
    to_lead: bool = False
    """The message goes to the lead: its consent is checked again before sending."""


_COMMUNICATION_COLUMNS = (
    "id, lead_id, client_id, type, recipient, subject, content, status, template_id,"
    " template_variables, priority, campaign_id, consent_status, compliance_notes,"
    " error_message"
)


async def record_communications(
    conn: AsyncConnection, communications: Sequence[NewCommunication]
) -> int:
    """Insert the communications and queue the pending ones for delivery.

    Both tables are written with ``COPY`` (ids are made here, so the queue rows need no
    round trip back): measured at a third of the cost of ``INSERT ... SELECT`` from a jsonb
    parameter. Sends a NOTIFY on :data:`COMMUNICATIONS_PENDING_CHANNEL` (delivered at
    commit) when any was queued. Must run inside the caller's transaction. Returns how many
    were queued for delivery.
    """
    if not communications:
        return 0
    queue: list[tuple[UUID, UUID, int, bool]] = []
    async with conn.cursor() as cur:
        async with cur.copy(
            "COPY public.communications (" + _COMMUNICATION_COLUMNS + ") FROM STDIN"
        ) as copy:
            for c in communications:
                communication_id = uuid4()
                await copy.write_row(
                    (
                        communication_id, c.lead_id, c.client_id, c.type, c.recipient,
                        c.subject, c.content, c.status, c.template_id,
                        Jsonb(c.template_variables), c.priority, c.campaign_id,
                        c.consent_status, c.compliance_notes, c.error_message,
                    )
                )  # fmt: skip
                if c.status == "pending":
                    queue.append((communication_id, c.client_id, c.priority, c.to_lead))
        if queue:
            async with cur.copy(
                "COPY public.delivery_queue (communication_id, client_id, priority, to_lead)"
                " FROM STDIN"
            ) as copy:
                for row in queue:
                    await copy.write_row(row)
    if queue:
        await notify(conn, COMMUNICATIONS_PENDING_CHANNEL)
    return len(queue)


async def recorded_messages(
    conn: AsyncConnection, lead_ids: Sequence[UUID]
) -> dict[UUID, dict[MessageKey, frozenset[str]]]:
    """For each of the leads that has communications: their statuses by
    :data:`~lqs.domain.notifications.MessageKey` (what the processor checks before
    recording a lead's messages again)."""
    cur = await conn.execute(
        "SELECT lead_id, type, recipient, coalesce(template_id, ''), status"
        " FROM public.communications WHERE lead_id = ANY(%s)",
        (list(lead_ids),),
    )
    found: dict[UUID, dict[MessageKey, set[str]]] = {}
    for lead_id, channel, recipient, template, status in await cur.fetchall():
        key = message_key(channel, recipient, template)
        found.setdefault(lead_id, {}).setdefault(key, set()).add(status)
    return {
        lead_id: {key: frozenset(statuses) for key, statuses in by_key.items()}
        for lead_id, by_key in found.items()
    }


@dataclass(frozen=True)
class CommunicationSummary:
    id: UUID
    client_slug: str
    channel: str
    recipient: str
    status: str
    provider: str | None
    retry_count: int
    reason: str | None
    """Why it failed (the error) or was rejected (the compliance note)."""
    created_at: datetime


async def list_communications(
    conn: AsyncConnection,
    *,
    status: str | None,
    client_slug: str | None,
    limit: int,
    lead_id: UUID | None = None,
    template: str | None = None,
    campaign_id: str | None = None,
) -> list[CommunicationSummary]:
    """The newest communications, optionally of one status, one client, one lead, one
    template (its name, any version: ``lead_qualified``; or one version:
    ``lead_qualified@v3``) and one campaign."""
    cur = await conn.execute(
        "SELECT c.id, k.slug, c.type, c.recipient, c.status, c.provider,"
        " coalesce(c.retry_count, 0), coalesce(c.error_message, c.compliance_notes),"
        " c.created_at"
        " FROM public.communications AS c JOIN public.clients AS k ON k.id = c.client_id"
        " WHERE (%(status)s::text IS NULL OR c.status = %(status)s::text)"
        "   AND (%(slug)s::text IS NULL OR k.slug = %(slug)s::text)"
        "   AND (%(lead)s::uuid IS NULL OR c.lead_id = %(lead)s::uuid)"
        "   AND (%(template)s::text IS NULL OR c.template_id = %(template)s::text"
        "        OR split_part(c.template_id, '@', 1) = %(template)s::text)"
        "   AND (%(campaign)s::text IS NULL OR c.campaign_id = %(campaign)s::text)"
        " ORDER BY c.created_at DESC, c.id LIMIT %(limit)s",
        {
            "status": status,
            "slug": client_slug,
            "lead": lead_id,
            "template": template,
            "campaign": campaign_id,
            "limit": limit,
        },
    )
    return [CommunicationSummary(*row) for row in await cur.fetchall()]


async def redrive_failed(
    conn: AsyncConnection, ids: Iterable[UUID] | None, client_slug: str | None
) -> list[UUID]:
    """Put failed communications back in the queue (all of a client's, or the given ids).

    Each gets ``status = 'pending'``, ``retry_count = 0`` and a queue row due now whose
    attempt numbers continue after the attempts already made. Communications that are not
    ``failed`` are left alone, and so are failed ones without content (their template
    failed: sent as they are, they would only fail again, losing the template's error;
    ``lqs.worker.rerender`` renders them first). Must run inside the caller's transaction.
    Returns the ids queued again.
    """
    id_list = None if ids is None else list(ids)
    cur = await conn.execute(
        """
        WITH picked AS (
            SELECT c.id FROM public.communications AS c
            JOIN public.clients AS k ON k.id = c.client_id
            WHERE c.status = 'failed' AND c.content IS NOT NULL
              AND (%(ids)s::uuid[] IS NULL OR c.id = ANY(%(ids)s::uuid[]))
              AND (%(slug)s::text IS NULL OR k.slug = %(slug)s::text)
            FOR UPDATE OF c
        ), reset AS (
            UPDATE public.communications AS c
            SET status = 'pending', retry_count = 0, error_message = NULL
            FROM picked WHERE c.id = picked.id
            RETURNING c.id, c.client_id, coalesce(c.priority, 5) AS priority, c.type, c.recipient,
                      c.lead_id
        )
        INSERT INTO public.delivery_queue (communication_id, client_id, priority, attempts, to_lead)
        SELECT r.id, r.client_id, r.priority,
               coalesce((SELECT max(a.attempt) FROM public.delivery_attempts AS a
                         WHERE a.communication_id = r.id), 0),
               EXISTS (SELECT 1 FROM public.leads AS l WHERE l.id = r.lead_id
                       AND r.recipient IN (l.email, l.phone))
        FROM reset AS r
        RETURNING communication_id
        """,
        {"ids": id_list, "slug": client_slug},
    )
    redriven = [row[0] for row in await cur.fetchall()]
    if redriven:
        await notify(conn, COMMUNICATIONS_PENDING_CHANNEL)
    return redriven


@dataclass(frozen=True)
class CommunicationState:
    """What decides whether a communication can be re-driven."""

    id: UUID
    client_id: UUID
    status: str
    rendered: bool
    """Whether it has content (False: its template failed; only a re-render helps)."""

    @property
    def retryable(self) -> bool:
        """Whether :func:`redrive_failed` would queue it again."""
        return self.status == "failed" and self.rendered


async def communication_state(
    conn: AsyncConnection, communication_id: UUID
) -> CommunicationState | None:
    """The communication's status, or None when it does not exist or is not visible to
    the session (row-level security: another client's)."""
    cur = await conn.execute(
        "SELECT id, client_id, status, content IS NOT NULL FROM public.communications"
        " WHERE id = %s",
        (communication_id,),
    )
    row = await cur.fetchone()
    return CommunicationState(*row) if row else None


@dataclass(frozen=True)
class DeliveryAttempt:
    """One call made to a provider for a communication (``delivery_attempts``)."""

    attempt: int
    provider: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    """``started`` (no answer recorded), ``accepted``, ``transient``, ``permanent``, or
    ``deferred`` (no request: held back by a send window or frequency cap, the reason in
    ``error_message``)."""
    http_status: int | None
    error_code: str | None
    error_message: str | None
    latency_ms: float | None
    recorded: bool
    """False when the worker's lease had expired: the outcome was not applied."""


async def delivery_attempts(conn: AsyncConnection, communication_id: UUID) -> list[DeliveryAttempt]:
    """The communication's delivery attempts, in the order they were made."""
    async with conn.cursor(row_factory=args_row(DeliveryAttempt)) as cur:
        await cur.execute(
            "SELECT attempt, provider, started_at, finished_at, outcome, http_status,"
            " error_code, error_message, latency_ms, recorded FROM public.delivery_attempts"
            " WHERE communication_id = %s ORDER BY attempt",
            (communication_id,),
        )
        return await cur.fetchall()


@dataclass(frozen=True)
class ProviderEvent:
    """A delivery event a provider reported for a communication (``provider_events``)."""

    provider: str
    event_type: str
    event_id: str
    kind: str
    occurred_at: datetime | None
    received_at: datetime
    effect: str | None
    """What applying it did (the new status, ``suppressed``, ``no change``); None: waiting."""
    reason: str | None
    """Why the provider says it bounced, failed or was deferred."""


async def provider_events(conn: AsyncConnection, communication_id: UUID) -> list[ProviderEvent]:
    """The events matched to the communication, in the order they were received."""
    async with conn.cursor(row_factory=args_row(ProviderEvent)) as cur:
        await cur.execute(
            "SELECT provider, event_type, event_id, kind, occurred_at, received_at, effect,"
            " reason FROM public.provider_events WHERE communication_id = %s"
            " ORDER BY received_at, id",
            (communication_id,),
        )
        return await cur.fetchall()


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str
    """``created``, ``attempt`` or ``event``."""
    summary: str


def _attempt_summary(a: DeliveryAttempt) -> str:
    if a.outcome == "started":
        # Written before the request; its answer never came back to be recorded
        # (in flight now, or the worker stopped): the provider may have it.
        return (
            f"attempt {a.attempt} via {a.provider}: started, no answer"
            " recorded (the provider may have accepted it)"
        )
    if a.outcome == "deferred":
        # No provider was called: a send window or a frequency cap held the message back.
        return f"attempt {a.attempt} deferred, not sent: {a.error_message or 'held back'}"
    text = f"attempt {a.attempt} via {a.provider}: {a.outcome}"
    if a.http_status is not None:
        text += f" (HTTP {a.http_status})"
    detail = " ".join(part for part in (a.error_code, a.error_message) if part)
    if detail:
        text += f" {detail}"
    text += f", {a.latency_ms or 0:.0f} ms"
    if not a.recorded:
        text += " [lease lost: not applied]"
    return text


async def communication_timeline(
    conn: AsyncConnection, communication_id: UUID
) -> tuple[dict[str, Any], list[TimelineEntry]] | None:
    """One communication and everything that happened to it, oldest first."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT c.*, k.slug AS client_slug FROM public.communications AS c"
            " JOIN public.clients AS k ON k.id = c.client_id WHERE c.id = %s",
            (communication_id,),
        )
        row = await cur.fetchone()
    if row is None:
        return None
    entries = [TimelineEntry(row["created_at"], "created", f"created ({row['type']})")]
    entries += [
        TimelineEntry(a.started_at, "attempt", _attempt_summary(a))
        for a in await delivery_attempts(conn, communication_id)
    ]
    entries += [
        TimelineEntry(
            e.occurred_at or e.received_at,
            "event",
            f"{e.provider} {e.event_type} → {e.effect or 'waiting'} (event {e.event_id})",
        )
        for e in await provider_events(conn, communication_id)
    ]
    entries.sort(key=lambda entry: entry.at)
    return row, entries


async def unknown_communications(conn: AsyncConnection, ids: Iterable[UUID]) -> list[UUID]:
    """Those of ``ids`` that name no communication at all, in the order given."""
    wanted = list(dict.fromkeys(ids))
    cur = await conn.execute("SELECT id FROM public.communications WHERE id = ANY(%s)", (wanted,))
    found = {row[0] for row in await cur.fetchall()}
    return [i for i in wanted if i not in found]


async def communications_with_ids_between(
    conn: AsyncConnection, low: UUID, high: UUID, *, limit: int
) -> list[UUID]:
    """Up to ``limit`` communication ids from ``low`` to ``high``: the ids an id prefix
    starts (the primary key's index answers)."""
    cur = await conn.execute(
        "SELECT id FROM public.communications WHERE id BETWEEN %s AND %s ORDER BY id LIMIT %s",
        (low, high, limit),
    )
    return [row[0] for row in await cur.fetchall()]
