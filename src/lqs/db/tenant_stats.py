"""SQL for a client's statistics over a time range, as the tenant API's ``GET /v1/stats``
reports them.

Each function is one read-only statement, run as the user (row-level security decides
what is counted) and filtered on the user's client explicitly, so that the planner walks
the client's indexes: ``idx_leads_client_received`` for leads (it carries the status and
the id, migration 0016, so that a range of leads is read from the index alone) and
``idx_communications_client_created`` for communications. Ranges are half-open
(``start <= t < end``); leads count by ``received_at``, communications by ``created_at``.
Buckets are UTC hours or days.

Every function first sets two things for the rest of the transaction
(:func:`_planned_for_this_client`), both measured in ``bench/tenant_api.py``:

- JIT off: these statements read one row per lead or message in the range, their
  estimated cost passes ``jit_above_cost`` at a few tens of thousands of rows, and
  compiling them took longer than running them (1.4-1.7 s of JIT per statement at
  200,000 leads, against 0.2-1 s of execution);
- a plan made for the client at hand (``plan_cache_mode = force_custom_plan``): clients
  differ in size by orders of magnitude, and once psycopg prepares a statement PostgreSQL
  may settle on a generic plan made for no client in particular. With one client holding
  99% of the rows, that plan read every client's messages of the range by
  ``idx_communications_created_at`` for a small client too (589 ms, against a few ms).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.rows import args_row

Bucket = Literal["hour", "day"]
RateDimension = Literal["provider", "type"]
"""What delivery rates are grouped by: the provider, or the channel (the seed's ``type``)."""

ATTEMPTED_STATUSES = ("sent", "delivered", "bounced", "failed")
"""Communications that left the queue for good or for a provider: the rates' denominator
(``pending`` ones are not there yet, ``rejected`` ones were never to be sent)."""


@dataclass(frozen=True)
class OutcomeCount:
    """How many of the leads received in one bucket have one status now."""

    bucket_start: datetime
    status: str
    leads: int


@dataclass(frozen=True)
class Funnel:
    """Leads received in the range; of those, qualified; of those, contacted (a
    communication was created); of those, delivered (one was delivered)."""

    received: int
    qualified: int
    contacted: int
    delivered: int


@dataclass(frozen=True)
class DeliveryCounts:
    """Communications created in the range for one provider or channel (``key``; None:
    no provider was ever used, e.g. nothing was sent yet), by what became of them."""

    key: str | None
    total: int
    attempted: int
    delivered: int
    bounced: int
    complained: int
    failed: int


async def _planned_for_this_client(conn: AsyncConnection) -> None:
    """For the rest of the transaction: no JIT compilation, and every statement planned
    for its parameters (see the module's notes)."""
    await conn.execute(
        "SELECT set_config('jit', 'off', true),"
        " set_config('plan_cache_mode', 'force_custom_plan', true)"
    )


async def leads_by_outcome(
    conn: AsyncConnection, client_id: UUID, start: datetime, end: datetime, bucket: Bucket
) -> list[OutcomeCount]:
    """Leads received in the range, counted per UTC ``bucket`` and current status; buckets
    without leads are left out. Oldest bucket first."""
    await _planned_for_this_client(conn)
    async with conn.cursor(row_factory=args_row(OutcomeCount)) as cur:
        await cur.execute(
            "SELECT date_trunc(%(bucket)s, received_at, 'UTC'), status, count(*)"
            " FROM public.leads"
            " WHERE client_id = %(client)s AND received_at >= %(start)s AND received_at < %(end)s"
            " GROUP BY 1, 2 ORDER BY 1, 2",
            {"bucket": bucket, "client": client_id, "start": start, "end": end},
        )
        return await cur.fetchall()


async def lead_funnel(
    conn: AsyncConnection, client_id: UUID, start: datetime, end: datetime
) -> Funnel:
    """The funnel of the leads received in the range (each stage a subset of the last).

    Each qualified lead's communications are read once (``reach``: NULL none, 1 some, 2 one
    delivered); the others' not at all.
    """
    await _planned_for_this_client(conn)
    async with conn.cursor(row_factory=args_row(Funnel)) as cur:
        await cur.execute(
            """
            SELECT count(*),
                   count(*) FILTER (WHERE status = 'qualified'),
                   count(reach),
                   count(*) FILTER (WHERE reach = 2)
            FROM (
                SELECT l.status,
                       CASE WHEN l.status = 'qualified' THEN (
                           SELECT max(CASE WHEN c.status = 'delivered' THEN 2 ELSE 1 END)
                           FROM public.communications AS c WHERE c.lead_id = l.id)
                       END AS reach
                FROM public.leads AS l
                WHERE l.client_id = %(client)s
                  AND l.received_at >= %(start)s AND l.received_at < %(end)s
                OFFSET 0  -- not flattened: each reach is computed once, not once per count
            ) AS ranged
            """,
            {"client": client_id, "start": start, "end": end},
        )
        funnel = await cur.fetchone()
    assert funnel is not None
    return funnel


async def delivery_counts(
    conn: AsyncConnection, client_id: UUID, start: datetime, end: datetime
) -> dict[RateDimension, list[DeliveryCounts]]:
    """Communications created in the range, grouped by provider and, apart, by channel
    (the seed's ``type``), in one pass over them (``GROUPING SETS``).

    A complaint is a provider event of kind ``complained`` matched to the communication
    (its status stays ``delivered``, so it is counted apart). The client's complaints are
    read once, from ``idx_provider_events_complaints`` (migration 0016), and looked up in
    a hash: not one probe of the events per message.
    """
    await _planned_for_this_client(conn)
    async with conn.cursor() as cur:
        await cur.execute(
            """
            SELECT GROUPING(c.provider) = 0,
                   (CASE WHEN GROUPING(c.provider) = 0 THEN c.provider ELSE c.type END)::text,
                   count(*),
                   count(*) FILTER (WHERE c.status = ANY(%(attempted)s)),
                   count(*) FILTER (WHERE c.status = 'delivered'),
                   count(*) FILTER (WHERE c.status = 'bounced'),
                   count(*) FILTER (WHERE c.id IN (
                       SELECT e.communication_id FROM public.provider_events AS e
                       WHERE e.client_id = %(client)s AND e.kind = 'complained')),
                   count(*) FILTER (WHERE c.status = 'failed')
            FROM public.communications AS c
            WHERE c.client_id = %(client)s
              AND c.created_at >= %(start)s AND c.created_at < %(end)s
            GROUP BY GROUPING SETS ((c.provider), (c.type))
            ORDER BY 1, 2 NULLS LAST
            """,
            {
                "attempted": list(ATTEMPTED_STATUSES),
                "client": client_id,
                "start": start,
                "end": end,
            },
        )
        rows = await cur.fetchall()
    found: dict[RateDimension, list[DeliveryCounts]] = {"provider": [], "type": []}
    for by_provider, *counts in rows:
        found["provider" if by_provider else "type"].append(DeliveryCounts(*counts))
    return found
