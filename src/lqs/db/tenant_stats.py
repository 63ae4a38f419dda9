"""SQL for a client's statistics over a time range, as the tenant API's ``GET /v1/stats``
reports them.

Each read is one read-only statement, run as the user (row-level security decides what
is counted) and filtered on the user's client explicitly, so that the planner walks the
client's indexes. Ranges are half-open (``start <= t < end``); leads count by
``received_at``, communications by ``created_at``. Buckets are UTC hours or days.

The counts come from a per-client, per-UTC-hour rollup (migration 0018:
``stats_lead_hours``, ``stats_message_hours``), so that 30 days cost 720 hours of counts,
not a million rows. Writers' triggers log every (client, hour) whose counts they change
in ``stats_stale_hours``; the worker's housekeeping recounts the logged hours
(:func:`lqs.db.stats_rollup.refresh_rollup`). A read counts live, from the rows, every
logged hour of the range and its first and last hour (which may be partial), and takes
every other whole hour from the rollup: the answer is the one a live count over the
whole range gives.

Every read first sets two things for the rest of the transaction
(:func:`_planned_for_this_client`), both measured in ``bench/tenant_api.py``:

- JIT off: the live part's estimated cost can pass ``jit_above_cost``, and compiling took
  longer than running (1.4-1.7 s of JIT per statement at 200,000 leads);
- a plan made for the client at hand (``plan_cache_mode = force_custom_plan``): clients
  differ in size by orders of magnitude, and once psycopg prepares a statement PostgreSQL
  may settle on a generic plan made for no client in particular (one that read every
  client's messages of the range by ``idx_communications_created_at``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

from psycopg import AsyncConnection, sql
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


_LIVE_HOURS = sql.SQL("""
    live_hours AS (
        -- The hours counted from the rows themselves: those logged as changed since
        -- their last rollup, and the range's first and last hour (partial, maybe).
        SELECT s.hour FROM public.stats_stale_hours AS s
        WHERE s.client_id = %(client)s
          AND s.hour >= date_trunc('hour', %(start)s::timestamptz, 'UTC')
          AND s.hour < %(end)s
        UNION
        SELECT date_trunc('hour', %(start)s::timestamptz, 'UTC')
        UNION
        SELECT date_trunc('hour', %(end)s::timestamptz, 'UTC')
    ), live_ranges AS MATERIALIZED (
        -- Materialized: the bounds reach the index as plain values. Inlined, an expression
        -- such as ``hour + interval '1 hour'`` is not leakproof, and row-level security
        -- keeps it out of the index condition (each hour would be read to the range's end).
        SELECT greatest(h.hour, %(start)s) AS lo,
               least(h.hour + interval '1 hour', %(end)s) AS hi
        FROM live_hours AS h
        WHERE greatest(h.hour, %(start)s) < least(h.hour + interval '1 hour', %(end)s)
    )
""")
"""Common table expressions naming the hours of ``[start, end)`` counted live, and the
ranges of time they cover within it. Every other whole hour of the range is read from
the rollup: between them, each instant of the range is counted once."""

_ROLLED_UP = sql.SQL("""
    r.client_id = %(client)s
    AND r.hour >= %(start)s AND r.hour <= %(end)s - interval '1 hour'
    AND r.hour NOT IN (SELECT h.hour FROM live_hours AS h)
""")
"""The rollup rows of the whole hours of the range that are not counted live."""

_REACH = sql.SQL("""
    CASE WHEN l.status = 'qualified' THEN (
        SELECT max(CASE WHEN c.status = 'delivered' THEN 2 ELSE 1 END)
        FROM public.communications AS c WHERE c.lead_id = l.id)
    END
""")
"""How far a qualified lead got (NULL: no communication, 1: some, 2: one delivered), read
once per qualified lead; NULL for the others. ``lqs_stats_refresh`` (migration 0018) rolls
``stats_lead_hours.contacted`` and ``delivered`` up with the same expression."""


_PARTS = {"live_hours": _LIVE_HOURS, "rolled_up": _ROLLED_UP, "reach": _REACH}


async def leads_by_outcome(
    conn: AsyncConnection, client_id: UUID, start: datetime, end: datetime, bucket: Bucket
) -> list[OutcomeCount]:
    """Leads received in the range, counted per UTC ``bucket`` and current status; buckets
    without leads are left out. Oldest bucket first."""
    await _planned_for_this_client(conn)
    async with conn.cursor(row_factory=args_row(OutcomeCount)) as cur:
        await cur.execute(
            sql.SQL("""
            WITH {live_hours}, counted AS (
                SELECT r.hour, r.status, r.leads FROM public.stats_lead_hours AS r
                WHERE {rolled_up}
                UNION ALL
                SELECT date_trunc('hour', l.received_at, 'UTC'), l.status, count(*)
                FROM live_ranges AS g
                JOIN public.leads AS l
                  ON l.client_id = %(client)s
                 AND l.received_at >= g.lo AND l.received_at < g.hi
                GROUP BY 1, 2
            )
            SELECT date_trunc(%(bucket)s, hour, 'UTC'), status, sum(leads)::bigint
            FROM counted GROUP BY 1, 2 ORDER BY 1, 2
            """).format(**_PARTS),
            {"bucket": bucket, "client": client_id, "start": start, "end": end},
        )
        return await cur.fetchall()


async def lead_funnel(
    conn: AsyncConnection, client_id: UUID, start: datetime, end: datetime
) -> Funnel:
    """The funnel of the leads received in the range (each stage a subset of the last)."""
    await _planned_for_this_client(conn)
    async with conn.cursor(row_factory=args_row(Funnel)) as cur:
        await cur.execute(
            sql.SQL("""
            WITH {live_hours}, counted AS (
                SELECT sum(r.leads) AS received,
                       sum(r.leads) FILTER (WHERE r.status = 'qualified') AS qualified,
                       sum(r.contacted) FILTER (WHERE r.status = 'qualified') AS contacted,
                       sum(r.delivered) FILTER (WHERE r.status = 'qualified') AS delivered
                FROM public.stats_lead_hours AS r
                WHERE {rolled_up}
                UNION ALL
                SELECT count(*), count(*) FILTER (WHERE status = 'qualified'),
                       count(reach), count(*) FILTER (WHERE reach = 2)
                FROM (
                    SELECT l.status, {reach} AS reach
                    FROM live_ranges AS g
                    JOIN public.leads AS l
                      ON l.client_id = %(client)s
                     AND l.received_at >= g.lo AND l.received_at < g.hi
                    OFFSET 0  -- not flattened: each reach is computed once, not per count
                ) AS ranged
            )
            SELECT coalesce(sum(received), 0)::bigint, coalesce(sum(qualified), 0)::bigint,
                   coalesce(sum(contacted), 0)::bigint, coalesce(sum(delivered), 0)::bigint
            FROM counted
            """).format(**_PARTS),
            {"client": client_id, "start": start, "end": end},
        )
        funnel = await cur.fetchone()
    assert funnel is not None
    return funnel


async def delivery_counts(
    conn: AsyncConnection, client_id: UUID, start: datetime, end: datetime
) -> dict[RateDimension, list[DeliveryCounts]]:
    """Communications created in the range, grouped by provider and, apart, by channel
    (the seed's ``type``, ``GROUPING SETS``).

    A complaint is a provider event of kind ``complained`` matched to the communication
    (its status stays ``delivered``, so it is counted apart), looked up per message in
    ``idx_provider_events_complaints`` (migration 0016).
    """
    await _planned_for_this_client(conn)
    async with conn.cursor() as cur:
        await cur.execute(
            sql.SQL("""
            WITH {live_hours}, counted AS (
                SELECT r.provider, r.type, r.total, r.attempted, r.delivered, r.bounced,
                       r.complained, r.failed
                FROM public.stats_message_hours AS r
                WHERE {rolled_up}
                UNION ALL
                SELECT c.provider, c.type, count(*),
                       count(*) FILTER (WHERE c.status = ANY(%(attempted)s)),
                       count(*) FILTER (WHERE c.status = 'delivered'),
                       count(*) FILTER (WHERE c.status = 'bounced'),
                       count(*) FILTER (WHERE EXISTS (
                           SELECT 1 FROM public.provider_events AS e
                           WHERE e.client_id = c.client_id AND e.communication_id = c.id
                             AND e.kind = 'complained')),
                       count(*) FILTER (WHERE c.status = 'failed')
                FROM live_ranges AS g
                JOIN public.communications AS c
                  ON c.client_id = %(client)s
                 AND c.created_at >= g.lo AND c.created_at < g.hi
                GROUP BY c.provider, c.type
            )
            SELECT GROUPING(provider) = 0,
                   (CASE WHEN GROUPING(provider) = 0 THEN provider ELSE type END)::text,
                   sum(total)::bigint, sum(attempted)::bigint, sum(delivered)::bigint,
                   sum(bounced)::bigint, sum(complained)::bigint, sum(failed)::bigint
            FROM counted
            GROUP BY GROUPING SETS ((provider), (type))
            ORDER BY 1, 2 NULLS LAST
            """).format(**_PARTS),
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
