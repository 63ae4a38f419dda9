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
(:func:`_read_plan`), both measured in ``bench/tenant_api.py``:

- JIT off: the live part's estimated cost can pass ``jit_above_cost``, and compiling took
  longer than running (1.4-1.7 s of JIT per statement at 200,000 leads);
- a plan made for the client at hand (``plan_cache_mode = force_custom_plan``): clients
  differ in size by orders of magnitude, and once psycopg prepares a statement PostgreSQL
  may settle on a generic plan made for no client in particular (one that read every
  client's messages of the range by ``idx_communications_created_at``).

It also reads the logged hours first, so that the live part's bounds are written into the
statement as constants (:func:`live_ranges`, :func:`_read_plan`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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


MAX_LIVE_RANGES = 16
"""At most this many ranges of time are counted live in one statement: past it, the
shortest gaps between them are counted live too (and left out of the rollup's part)."""

_HOUR = timedelta(hours=1)

_STALE_HOURS = """
SELECT set_config('jit', 'off', true),
       set_config('plan_cache_mode', 'force_custom_plan', true),
       ARRAY(SELECT s.hour FROM public.stats_stale_hours AS s
             WHERE s.client_id = %(client)s
               AND s.hour >= date_trunc('hour', %(start)s::timestamptz, 'UTC')
               AND s.hour < %(end)s)
"""


def _hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def live_ranges(
    stale: Iterable[datetime], start: datetime, end: datetime, limit: int = MAX_LIVE_RANGES
) -> list[tuple[datetime, datetime]]:
    """The ranges of ``[start, end)`` counted from the rows: the hours logged as changed
    since their last rollup (``stale``) and the range's first and last hour (partial,
    maybe), each cut to the range, adjacent ones joined, oldest first. Past ``limit``
    ranges, the shortest gaps between them are joined in too (whole hours, so each
    instant is still counted once: the rollup's part leaves out every hour a range
    touches)."""
    ranges: list[tuple[datetime, datetime]] = []
    for hour in sorted({_hour_of(start), _hour_of(end), *(_hour_of(h) for h in stale)}):
        lo, hi = max(hour, start), min(hour + _HOUR, end)
        if lo >= hi:
            continue
        if ranges and ranges[-1][1] >= lo:
            ranges[-1] = (ranges[-1][0], max(ranges[-1][1], hi))
        else:
            ranges.append((lo, hi))
    if len(ranges) > limit:
        gaps = sorted(later[0] - earlier[1] for earlier, later in itertools.pairwise(ranges))
        widest_joined = gaps[len(ranges) - limit - 1]
        joined = [ranges[0]]
        for lo, hi in ranges[1:]:
            if lo - joined[-1][1] <= widest_joined:
                joined[-1] = (joined[-1][0], hi)
            else:
                joined.append((lo, hi))
        ranges = joined
    return ranges


async def _read_plan(
    conn: AsyncConnection, client_id: UUID, start: datetime, end: datetime
) -> dict[str, sql.Composable]:
    """For the rest of the transaction: no JIT compilation, and every statement planned
    for its parameters (see the module's notes). Returns the statement parts that split
    the range between the rows and the rollup, with the live ranges' bounds written as
    constants: the planner then estimates each range from the column's histogram.
    Bounds taken from a join (as they once were) are unknown when the plan is made: the
    guess priced the right index like a sequential scan, and at a million leads
    PostgreSQL 16 chose the scan, or ``idx_communications_client_id`` without the time
    (bench/tenant_api.py measured both)."""
    cur = await conn.execute(_STALE_HOURS, {"client": client_id, "start": start, "end": end})
    row = await cur.fetchone()
    assert row is not None
    ranges = live_ranges(row[2], start, end, MAX_LIVE_RANGES)

    def within(column: str, floor_to_hour: bool) -> sql.Composable:
        if not ranges:
            return sql.SQL("FALSE")
        return sql.SQL("({})").format(
            sql.SQL(" OR ").join(
                sql.SQL("{column} >= {lo} AND {column} < {hi}").format(
                    column=sql.SQL(column),
                    lo=sql.Literal(_hour_of(lo) if floor_to_hour else lo),
                    hi=sql.Literal(hi),
                )
                for lo, hi in ranges
            )
        )

    return {
        "leads_live": within("l.received_at", False),
        "messages_live": within("c.created_at", False),
        "rolled_up": sql.SQL(
            "r.client_id = %(client)s"
            " AND r.hour >= %(start)s AND r.hour <= %(end)s - interval '1 hour'"
            " AND NOT {}"
        ).format(within("r.hour", True)),
        "reach": _REACH,
    }


_REACH = sql.SQL("""
    CASE WHEN l.status = 'qualified' THEN (
        SELECT max(CASE WHEN c.status = 'delivered' THEN 2 ELSE 1 END)
        FROM public.communications AS c WHERE c.lead_id = l.id)
    END
""")
"""How far a qualified lead got (NULL: no communication, 1: some, 2: one delivered), read
once per qualified lead; NULL for the others. ``lqs_stats_refresh`` (migration 0018) rolls
``stats_lead_hours.contacted`` and ``delivered`` up with the same expression."""


async def leads_by_outcome(
    conn: AsyncConnection, client_id: UUID, start: datetime, end: datetime, bucket: Bucket
) -> list[OutcomeCount]:
    """Leads received in the range, counted per UTC ``bucket`` and current status; buckets
    without leads are left out. Oldest bucket first."""
    parts = await _read_plan(conn, client_id, start, end)
    async with conn.cursor(row_factory=args_row(OutcomeCount)) as cur:
        await cur.execute(
            sql.SQL("""
            WITH counted AS (
                SELECT r.hour, r.status, r.leads FROM public.stats_lead_hours AS r
                WHERE {rolled_up}
                UNION ALL
                SELECT date_trunc('hour', l.received_at, 'UTC'), l.status, count(*)
                FROM public.leads AS l
                WHERE l.client_id = %(client)s AND {leads_live}
                GROUP BY 1, 2
            )
            SELECT date_trunc(%(bucket)s, hour, 'UTC'), status, sum(leads)::bigint
            FROM counted GROUP BY 1, 2 ORDER BY 1, 2
            """).format(**parts),
            {"bucket": bucket, "client": client_id, "start": start, "end": end},
        )
        return await cur.fetchall()


async def lead_funnel(
    conn: AsyncConnection, client_id: UUID, start: datetime, end: datetime
) -> Funnel:
    """The funnel of the leads received in the range (each stage a subset of the last)."""
    parts = await _read_plan(conn, client_id, start, end)
    async with conn.cursor(row_factory=args_row(Funnel)) as cur:
        await cur.execute(
            sql.SQL("""
            WITH counted AS (
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
                    FROM public.leads AS l
                    WHERE l.client_id = %(client)s AND {leads_live}
                    OFFSET 0  -- not flattened: each reach is computed once, not per count
                ) AS ranged
            )
            SELECT coalesce(sum(received), 0)::bigint, coalesce(sum(qualified), 0)::bigint,
                   coalesce(sum(contacted), 0)::bigint, coalesce(sum(delivered), 0)::bigint
            FROM counted
            """).format(**parts),
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
    parts = await _read_plan(conn, client_id, start, end)
    async with conn.cursor() as cur:
        await cur.execute(
            sql.SQL("""
            WITH counted AS (
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
                FROM public.communications AS c
                WHERE c.client_id = %(client)s AND {messages_live}
                GROUP BY c.provider, c.type
            )
            SELECT GROUPING(provider) = 0,
                   (CASE WHEN GROUPING(provider) = 0 THEN provider ELSE type END)::text,
                   sum(total)::bigint, sum(attempted)::bigint, sum(delivered)::bigint,
                   sum(bounced)::bigint, sum(complained)::bigint, sum(failed)::bigint
            FROM counted
            GROUP BY GROUPING SETS ((provider), (type))
            ORDER BY 1, 2 NULLS LAST
            """).format(**parts),
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
