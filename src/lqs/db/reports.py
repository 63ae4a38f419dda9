"""SQL for reports over clients: what became of their leads and messages, and what a
client holds.

``lqs demo`` prints the counts once its pipeline has settled and ``lqs stats`` prints them
for the live database; each function is one read-only statement. ``client_ids`` None
means every client; ``since`` keeps what was created (a lead, a message, a suppression),
received (a delivery event) or recorded (a consent entry) at or after that moment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.rows import args_row

_Row = TypeVar("_Row")


async def _rows(
    conn: AsyncConnection,
    query: str,
    client_ids: Sequence[UUID] | None,
    row: Callable[..., _Row],
    since: datetime | None = None,
) -> list[_Row]:
    """``query`` run with ``%(c)s`` the clients (None: every client) and ``%(since)s`` the
    moment, each row made by ``row(*columns)``."""
    async with conn.cursor(row_factory=args_row(row)) as cur:
        await cur.execute(
            query, {"c": None if client_ids is None else list(client_ids), "since": since}
        )
        return await cur.fetchall()


@dataclass(frozen=True)
class Unsettled:
    """What the pipeline still has to do for the clients."""

    queued_leads: int
    open_communications: int
    """Communications still ``pending`` or ``sent`` (no final status from the provider),
    leaving out those deferred to later by a send window or a frequency cap."""


_HELD_BACK = (
    "q.next_attempt_at > now() AND q.lease_owner IS NULL AND EXISTS ("
    " SELECT 1 FROM public.delivery_attempts AS a"
    " WHERE a.communication_id = q.communication_id AND a.outcome = 'deferred')"
)
"""A queue row ``q`` held back by a send window or a frequency cap: a deferral on record,
not claimed, and due later."""


_OPEN_COUNTS = (
    "SELECT (SELECT count(*) FROM public.leads WHERE client_id = ANY(%(c)s)"
    "        AND status = 'queued'),"
    "       (SELECT count(*) FROM public.communications AS m WHERE client_id = ANY(%(c)s)"
    "        AND status IN ('pending', 'sent') AND NOT EXISTS ("
    "            SELECT 1 FROM public.delivery_queue AS q WHERE q.communication_id = m.id AND "
)


async def unsettled(conn: AsyncConnection, client_ids: Sequence[UUID]) -> Unsettled:
    """How many of the clients' leads are still queued and communications still open."""
    cur = await conn.execute(
        _OPEN_COUNTS + _HELD_BACK + "))",
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


async def leads_by_status(
    conn: AsyncConnection, client_ids: Sequence[UUID] | None, since: datetime | None = None
) -> list[LeadCount]:
    """Leads per client and status, by client slug then status."""
    return await _rows(
        conn,
        "SELECT k.slug, l.status, count(*) FROM public.leads l"
        " JOIN public.clients k ON k.id = l.client_id"
        " WHERE (%(c)s::uuid[] IS NULL OR l.client_id = ANY(%(c)s::uuid[]))"
        "   AND (%(since)s::timestamptz IS NULL OR l.created_at >= %(since)s::timestamptz)"
        " GROUP BY 1, 2 ORDER BY 1, 2",
        client_ids,
        LeadCount,
        since,
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
    conn: AsyncConnection, client_ids: Sequence[UUID] | None, since: datetime | None = None
) -> list[CommunicationCount]:
    """Communications and their retries per channel, provider and status."""
    return await _rows(
        conn,
        "SELECT c.type, coalesce(c.provider, '-'), c.status, count(*),"
        " sum(coalesce(c.retry_count, 0)) FROM public.communications c"
        " WHERE (%(c)s::uuid[] IS NULL OR c.client_id = ANY(%(c)s::uuid[]))"
        "   AND (%(since)s::timestamptz IS NULL OR c.created_at >= %(since)s::timestamptz)"
        " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        client_ids,
        CommunicationCount,
        since,
    )


@dataclass(frozen=True)
class Latency:
    """Percentiles of one stretch of a message's path, in milliseconds (None: no message)."""

    path: str
    messages: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


async def latencies(
    conn: AsyncConnection, client_ids: Sequence[UUID] | None, since: datetime | None = None
) -> list[Latency]:
    """Intake to the provider's acceptance, then acceptance to the delivery webhook, over
    the messages created since ``since``."""
    return await _rows(
        conn,
        "WITH d AS ("
        "  SELECT extract(epoch FROM c.sent_at - l.created_at) * 1000 AS to_sent,"
        # An outbound webhook is delivered when its receiver answers: no delivery event.
        "         CASE WHEN c.type <> 'webhook'"
        "           THEN extract(epoch FROM c.delivered_at - c.sent_at) * 1000 END AS to_delivered"
        "  FROM public.communications c JOIN public.leads l ON l.id = c.lead_id"
        "  WHERE (%(c)s::uuid[] IS NULL OR c.client_id = ANY(%(c)s::uuid[]))"
        "    AND (%(since)s::timestamptz IS NULL OR c.created_at >= %(since)s::timestamptz)"
        "    AND c.sent_at IS NOT NULL)"
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
        since,
    )


@dataclass(frozen=True)
class EventCount:
    provider: str
    events: int
    unmatched: int
    """Stored events matched to none of the client's communications (yet: pending ones too)."""


async def delivery_events_by_provider(
    conn: AsyncConnection, client_ids: Sequence[UUID] | None, since: datetime | None = None
) -> list[EventCount]:
    """Stored delivery events per provider (each event once: re-deliveries are not stored)."""
    return await _rows(
        conn,
        "SELECT provider, count(*), count(*) FILTER (WHERE communication_id IS NULL)"
        " FROM public.provider_events"
        " WHERE (%(c)s::uuid[] IS NULL OR client_id = ANY(%(c)s::uuid[]))"
        "   AND (%(since)s::timestamptz IS NULL OR received_at >= %(since)s::timestamptz)"
        " GROUP BY 1 ORDER BY 1",
        client_ids,
        EventCount,
        since,
    )


@dataclass(frozen=True)
class SuppressionCount:
    reason: str
    recipients: int


async def suppressions_by_reason(
    conn: AsyncConnection, client_ids: Sequence[UUID] | None, since: datetime | None = None
) -> list[SuppressionCount]:
    """Suppressed recipients per reason."""
    return await _rows(
        conn,
        "SELECT reason, count(*) FROM public.suppressions"
        " WHERE (%(c)s::uuid[] IS NULL OR client_id = ANY(%(c)s::uuid[]))"
        "   AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s::timestamptz)"
        " GROUP BY 1 ORDER BY 1",
        client_ids,
        SuppressionCount,
        since,
    )


@dataclass(frozen=True)
class ConsentCount:
    source: str
    consent_status: str
    entries: int


async def consent_history_by_source(
    conn: AsyncConnection, client_ids: Sequence[UUID] | None, since: datetime | None = None
) -> list[ConsentCount]:
    """Consent history entries per source and status."""
    return await _rows(
        conn,
        "SELECT source, consent_status, count(*) FROM public.consent_history"
        " WHERE (%(c)s::uuid[] IS NULL OR client_id = ANY(%(c)s::uuid[]))"
        "   AND (%(since)s::timestamptz IS NULL OR recorded_at >= %(since)s::timestamptz)"
        " GROUP BY 1, 2 ORDER BY 1, 2",
        client_ids,
        ConsentCount,
        since,
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
    client_id: UUID


async def sample_delivered_lead(
    conn: AsyncConnection, client_ids: Sequence[UUID]
) -> SampleLead | None:
    """The highest-scoring qualified lead (oldest first on ties) that was emailed and
    delivered to; None when there is none."""
    found = await _rows(
        conn,
        "SELECT l.id, l.email, l.score, l.grade, l.status, coalesce(l.score_breakdown, '[]'),"
        " (SELECT c.id FROM public.communications c WHERE c.lead_id = l.id"
        "  AND c.type = 'email' AND c.recipient = l.email ORDER BY c.created_at LIMIT 1),"
        " l.client_id FROM public.leads l"
        " WHERE l.client_id = ANY(%(c)s::uuid[]) AND l.status = 'qualified'"
        " AND EXISTS (SELECT 1 FROM public.communications c WHERE c.lead_id = l.id"
        "             AND c.status = 'delivered' AND c.type = 'email' AND c.recipient = l.email)"
        " ORDER BY l.score DESC, l.created_at LIMIT 1",
        client_ids,
        SampleLead,
    )
    return found[0] if found else None


@dataclass(frozen=True)
class ClientHoldings:
    """What one client holds, counted (``lqs clients show``)."""

    created_at: datetime
    leads: dict[str, int]
    """Leads by status (statuses with none left out)."""
    live_api_keys: int
    revoked_api_keys: int
    push_subscriptions: int
    """Subscriptions still live (not gone)."""
    templates: int
    """Template names the client stored (any number of versions each)."""
    suppressions: int


async def client_holdings(conn: AsyncConnection, client_id: UUID) -> ClientHoldings | None:
    """The client's creation time and counts of what is its; None for no such client."""
    found = await _rows(
        conn,
        "SELECT k.created_at,"
        " coalesce((SELECT jsonb_object_agg(status, n) FROM (SELECT status, count(*) AS n"
        "   FROM public.leads WHERE client_id = k.id GROUP BY status) AS s), '{}'),"
        " (SELECT count(*) FROM public.api_keys WHERE client_id = k.id AND revoked_at IS NULL),"
        " (SELECT count(*) FROM public.api_keys"
        "   WHERE client_id = k.id AND revoked_at IS NOT NULL),"
        " (SELECT count(*) FROM public.push_subscriptions"
        "   WHERE client_id = k.id AND gone_at IS NULL),"
        " (SELECT count(DISTINCT name) FROM public.templates WHERE client_id = k.id),"
        " (SELECT count(*) FROM public.suppressions WHERE client_id = k.id)"
        " FROM public.clients k WHERE k.id = ANY(%(c)s::uuid[])",
        [client_id],
        ClientHoldings,
    )
    return found[0] if found else None


@dataclass(frozen=True)
class Deferral:
    """Messages held back by a send window or a frequency cap and due later."""

    client_slug: str
    channel: str
    messages: int
    due_from: datetime
    reason: str
    """One of their deferrals' reasons, as its attempt records it."""


_DEFERRED = (
    "SELECT k.slug, m.type, count(*), min(q.next_attempt_at), min(r.error_message)"
    " FROM public.delivery_queue AS q"
    " JOIN public.communications AS m ON m.id = q.communication_id"
    " JOIN public.clients AS k ON k.id = m.client_id"
    " CROSS JOIN LATERAL (SELECT a.error_message FROM public.delivery_attempts AS a"
    "     WHERE a.communication_id = m.id ORDER BY a.attempt DESC LIMIT 1) AS r"
    " WHERE q.client_id = ANY(%(c)s) AND "
)


async def deferred_messages(conn: AsyncConnection, client_ids: Sequence[UUID]) -> list[Deferral]:
    """The clients' messages waiting for their send window or frequency cap, by client
    and channel: how many, from when they are due, and one reason."""
    return await _rows(
        conn,
        _DEFERRED + _HELD_BACK + " GROUP BY k.slug, m.type ORDER BY k.slug, m.type",
        client_ids,
        Deferral,
    )
