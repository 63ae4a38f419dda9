"""SQL for reports over a set of clients: what became of their leads and messages.

``lqs demo`` prints these once its pipeline has settled; each function is one read-only
statement over the clients given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.rows import args_row

_Row = TypeVar("_Row")


async def _rows(
    conn: AsyncConnection, query: str, client_ids: Sequence[UUID], row: Callable[..., _Row]
) -> list[_Row]:
    """``query`` run over the clients (its one ``%s``), each row made by ``row(*columns)``."""
    async with conn.cursor(row_factory=args_row(row)) as cur:
        await cur.execute(query, (list(client_ids),))
        return await cur.fetchall()


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
    return await _rows(
        conn,
        "SELECT k.slug, l.status, count(*) FROM public.leads l"
        " JOIN public.clients k ON k.id = l.client_id WHERE l.client_id = ANY(%s)"
        " GROUP BY 1, 2 ORDER BY 1, 2",
        client_ids,
        LeadCount,
    )


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
    return await _rows(
        conn,
        "SELECT c.type, coalesce(c.provider, '-'), c.status, count(*),"
        " sum(coalesce(c.retry_count, 0)) FROM public.communications c"
        " WHERE c.client_id = ANY(%s) GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        client_ids,
        CommunicationCount,
    )


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
    return await _rows(
        conn,
        "WITH d AS ("
        "  SELECT extract(epoch FROM c.sent_at - l.created_at) * 1000 AS to_sent,"
        "         extract(epoch FROM c.delivered_at - c.sent_at) * 1000 AS to_delivered"
        "  FROM public.communications c JOIN public.leads l ON l.id = c.lead_id"
        "  WHERE c.client_id = ANY(%s) AND c.sent_at IS NOT NULL)"
        " SELECT 'intake → provider accepted', count(to_sent),"
        "  percentile_cont(0.5) WITHIN GROUP (ORDER BY to_sent),"
        "  percentile_cont(0.95) WITHIN GROUP (ORDER BY to_sent),"
        "  percentile_cont(0.99) WITHIN GROUP (ORDER BY to_sent) FROM d"
        " UNION ALL SELECT 'sent → delivered (webhook)', count(to_delivered),"
        "  percentile_cont(0.5) WITHIN GROUP (ORDER BY to_delivered),"
        "  percentile_cont(0.95) WITHIN GROUP (ORDER BY to_delivered),"
        "  percentile_cont(0.99) WITHIN GROUP (ORDER BY to_delivered) FROM d",
        client_ids,
        Latency,
    )


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
    return await _rows(
        conn,
        "SELECT provider, count(*), count(*) FILTER (WHERE communication_id IS NULL)"
        " FROM public.provider_events WHERE client_id = ANY(%s) GROUP BY 1 ORDER BY 1",
        client_ids,
        EventCount,
    )


@dataclass(frozen=True)
class SuppressionCount:
    reason: str
    recipients: int


async def suppressions_by_reason(
    conn: AsyncConnection, client_ids: Sequence[UUID]
) -> list[SuppressionCount]:
    """Suppressed recipients per reason."""
    return await _rows(
        conn,
        "SELECT reason, count(*) FROM public.suppressions WHERE client_id = ANY(%s)"
        " GROUP BY 1 ORDER BY 1",
        client_ids,
        SuppressionCount,
    )


@dataclass(frozen=True)
class ConsentCount:
    source: str
    consent_status: str
    entries: int


async def consent_history_by_source(
    conn: AsyncConnection, client_ids: Sequence[UUID]
) -> list[ConsentCount]:
    """Consent history entries per source and status."""
    return await _rows(
        conn,
        "SELECT source, consent_status, count(*) FROM public.consent_history"
        " WHERE client_id = ANY(%s) GROUP BY 1, 2 ORDER BY 1",
        client_ids,
        ConsentCount,
    )


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
    found = await _rows(
        conn,
        "SELECT l.id, l.email, l.score, l.grade, l.status, coalesce(l.score_breakdown, '[]'),"
        " (SELECT c.id FROM public.communications c WHERE c.lead_id = l.id"
        "  AND c.type = 'email' AND c.recipient = l.email ORDER BY c.created_at LIMIT 1)"
        " FROM public.leads l WHERE l.client_id = ANY(%s) AND l.status = 'qualified'"
        " AND EXISTS (SELECT 1 FROM public.communications c WHERE c.lead_id = l.id"
        "             AND c.status = 'delivered' AND c.type = 'email' AND c.recipient = l.email)"
        " ORDER BY l.score DESC, l.created_at LIMIT 1",
        client_ids,
        SampleLead,
    )
    return found[0] if found else None
