"""SQL for reports over a set of clients: what became of their leads and messages.

``lqs demo`` prints these once its pipeline has settled; each function is one read-only
statement over the clients given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection


@dataclass(frozen=True)
class Unsettled:
    """What the pipeline still has to do for the clients."""

    queued_leads: int
    open_communications: int
    """Communications still ``pending`` or ``sent`` (no final status from the provider)."""


async def unsettled(conn: AsyncConnection, client_ids: Sequence[UUID]) -> Unsettled:
    """How many of the clients' leads are still queued and communications still open."""
    cur = await conn.execute(
        "SELECT (SELECT count(*) FROM public.leads WHERE client_id = ANY(%(c)s)"
        "        AND status = 'queued'),"
        "       (SELECT count(*) FROM public.communications WHERE client_id = ANY(%(c)s)"
        "        AND status IN ('pending', 'sent'))",
        {"c": list(client_ids)},
    )
    row = await cur.fetchone()
    assert row is not None
    return Unsettled(int(row[0]), int(row[1]))


@dataclass(frozen=True)
class LeadCount:
    client_slug: str
    status: str
    leads: int


async def leads_by_status(conn: AsyncConnection, client_ids: Sequence[UUID]) -> list[LeadCount]:
    """Leads per client and status, by client slug then status."""
    cur = await conn.execute(
        "SELECT k.slug, l.status, count(*) FROM public.leads l"
        " JOIN public.clients k ON k.id = l.client_id WHERE l.client_id = ANY(%s)"
        " GROUP BY 1, 2 ORDER BY 1, 2",
        (list(client_ids),),
    )
    return [LeadCount(slug, status, int(n)) for slug, status, n in await cur.fetchall()]


@dataclass(frozen=True)
class CommunicationCount:
    channel: str
    provider: str
    """The provider's name, ``-`` for communications no provider took."""
    status: str
    communications: int
    retries: int


async def communications_by_status(
    conn: AsyncConnection, client_ids: Sequence[UUID]
) -> list[CommunicationCount]:
    """Communications and their retries per channel, provider and status."""
    cur = await conn.execute(
        "SELECT c.type, coalesce(c.provider, '-'), c.status, count(*),"
        " sum(coalesce(c.retry_count, 0)) FROM public.communications c"
        " WHERE c.client_id = ANY(%s) GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        (list(client_ids),),
    )
    return [
        CommunicationCount(channel, provider, status, int(n), int(retries))
        for channel, provider, status, n, retries in await cur.fetchall()
    ]


@dataclass(frozen=True)
class Latency:
    """Percentiles of one stretch of a message's path, in milliseconds (None: no message)."""

    path: str
    messages: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


async def latencies(conn: AsyncConnection, client_ids: Sequence[UUID]) -> list[Latency]:
    """Intake to the provider's acceptance, then acceptance to the delivery webhook."""
    cur = await conn.execute(
        "WITH d AS ("
        "  SELECT extract(epoch FROM c.sent_at - l.created_at) * 1000 AS to_sent,"
        "         extract(epoch FROM c.delivered_at - c.sent_at) * 1000 AS to_delivered"
        "  FROM public.communications c JOIN public.leads l ON l.id = c.lead_id"
        "  WHERE c.client_id = ANY(%(c)s) AND c.sent_at IS NOT NULL)"
        " SELECT 'intake → provider accepted', count(to_sent),"
        "  percentile_cont(0.5) WITHIN GROUP (ORDER BY to_sent),"
        "  percentile_cont(0.95) WITHIN GROUP (ORDER BY to_sent),"
        "  percentile_cont(0.99) WITHIN GROUP (ORDER BY to_sent) FROM d"
        " UNION ALL SELECT 'sent → delivered (webhook)', count(to_delivered),"
        "  percentile_cont(0.5) WITHIN GROUP (ORDER BY to_delivered),"
        "  percentile_cont(0.95) WITHIN GROUP (ORDER BY to_delivered),"
        "  percentile_cont(0.99) WITHIN GROUP (ORDER BY to_delivered) FROM d",
        {"c": list(client_ids)},
    )
    return [Latency(path, int(n), *values) for path, n, *values in await cur.fetchall()]


@dataclass(frozen=True)
class EventCount:
    provider: str
    events: int
    unmatched: int
    """Stored events that matched none of the client's communications."""


async def delivery_events_by_provider(
    conn: AsyncConnection, client_ids: Sequence[UUID]
) -> list[EventCount]:
    """Stored delivery events per provider (each event once: re-deliveries are not stored)."""
    cur = await conn.execute(
        "SELECT provider, count(*), count(*) FILTER (WHERE communication_id IS NULL)"
        " FROM public.provider_events WHERE client_id = ANY(%s) GROUP BY 1 ORDER BY 1",
        (list(client_ids),),
    )
    return [EventCount(p, int(n), int(unmatched)) for p, n, unmatched in await cur.fetchall()]


@dataclass(frozen=True)
class SuppressionCount:
    reason: str
    recipients: int


async def suppressions_by_reason(
    conn: AsyncConnection, client_ids: Sequence[UUID]
) -> list[SuppressionCount]:
    """Suppressed recipients per reason."""
    cur = await conn.execute(
        "SELECT reason, count(*) FROM public.suppressions WHERE client_id = ANY(%s)"
        " GROUP BY 1 ORDER BY 1",
        (list(client_ids),),
    )
    return [SuppressionCount(reason, int(n)) for reason, n in await cur.fetchall()]


@dataclass(frozen=True)
class ConsentCount:
    source: str
    consent_status: str
    entries: int


async def consent_history_by_source(
    conn: AsyncConnection, client_ids: Sequence[UUID]
) -> list[ConsentCount]:
    """Consent history entries per source and status."""
    cur = await conn.execute(
        "SELECT source, consent_status, count(*) FROM public.consent_history"
        " WHERE client_id = ANY(%s) GROUP BY 1, 2 ORDER BY 1",
        (list(client_ids),),
    )
    return [ConsentCount(source, status, int(n)) for source, status, n in await cur.fetchall()]


@dataclass(frozen=True)
class SampleLead:
    """A qualified lead whose own email was delivered, and that email."""

    id: UUID
    email: str
    score: int | None
    grade: str | None
    status: str
    score_breakdown: list[dict[str, Any]]
    communication_id: UUID
    """Its first email communication to that address."""


async def sample_delivered_lead(
    conn: AsyncConnection, client_ids: Sequence[UUID]
) -> SampleLead | None:
    """The highest-scoring qualified lead (oldest first on ties) that was emailed and
    delivered to; None when there is none."""
    cur = await conn.execute(
        "SELECT l.id, l.email, l.score, l.grade, l.status, coalesce(l.score_breakdown, '[]'),"
        " (SELECT c.id FROM public.communications c WHERE c.lead_id = l.id"
        "  AND c.type = 'email' AND c.recipient = l.email ORDER BY c.created_at LIMIT 1)"
        " FROM public.leads l WHERE l.client_id = ANY(%s) AND l.status = 'qualified'"
        " AND EXISTS (SELECT 1 FROM public.communications c WHERE c.lead_id = l.id"
        "             AND c.status = 'delivered' AND c.type = 'email' AND c.recipient = l.email)"
        " ORDER BY l.score DESC, l.created_at LIMIT 1",
        (list(client_ids),),
    )
    row = await cur.fetchone()
    return None if row is None else SampleLead(*row)
