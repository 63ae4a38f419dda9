"""The statistics' hourly rollup (migration 0018) answers what a live count answers.

``GET /v1/stats`` reads per-client, per-hour counts and counts live only the hours logged
as changed and the range's edges. These tests hold the three reads to a count made here,
in Python, over the rows as inserted and changed: before any rollup (every hour logged),
after a refresh (none), after changes (some), and after another refresh; for whole days,
hours, ranges that start and end mid-hour, and a range inside one hour. The reads run as
a signed-in user, under row-level security, as the API runs them.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from lqs.db import tenant_stats
from lqs.db.connection import connect
from lqs.db.migrate import load_migrations, migrate
from lqs.db.pool import tenant_session
from lqs.db.stats_rollup import refresh_rollup
from lqs.db.tenant_stats import (
    ATTEMPTED_STATUSES,
    MAX_LIVE_RANGES,
    Bucket,
    DeliveryCounts,
    Funnel,
    OutcomeCount,
    delivery_counts,
    lead_funnel,
    leads_by_outcome,
)
from lqs.worker import run as worker_run
from lqs.worker.run import refresh_stats, run_worker
from tests.configs import worker_config

pytestmark = pytest.mark.asyncio(loop_scope="module")

DAY0 = datetime(2026, 3, 1, tzinfo=UTC)
STATUSES = ("queued", "qualified", "qualified", "nurture", "disqualified", "error")
MESSAGE_STATUSES = ("pending", "sent", "delivered", "delivered", "failed", "bounced", "rejected")
PROVIDERS = {"email": ("resend", "sendgrid"), "sms": ("twilio",), "push": ("push",)}


# ---------------------------------------------------------------- the rows, as known here


@dataclass
class Lead:
    id: UUID
    client: UUID
    received_at: datetime
    status: str


@dataclass
class Message:
    id: UUID
    lead: UUID
    client: UUID
    created_at: datetime
    type: str
    status: str
    provider: str | None


@dataclass
class Known:
    leads: dict[UUID, Lead] = field(default_factory=dict)
    messages: dict[UUID, Message] = field(default_factory=dict)
    complained: set[UUID] = field(default_factory=set)


def _trunc(at: datetime, bucket: Bucket) -> datetime:
    at = at.astimezone(UTC)
    if bucket == "day":
        return at.replace(hour=0, minute=0, second=0, microsecond=0)
    return at.replace(minute=0, second=0, microsecond=0)


def expected_outcomes(
    known: Known, client: UUID, start: datetime, end: datetime, bucket: Bucket
) -> list[OutcomeCount]:
    counts = Counter(
        (_trunc(lead.received_at, bucket), lead.status)
        for lead in known.leads.values()
        if lead.client == client and start <= lead.received_at < end
    )
    return [OutcomeCount(at, status, n) for (at, status), n in sorted(counts.items())]


def expected_funnel(known: Known, client: UUID, start: datetime, end: datetime) -> Funnel:
    ranged = [
        lead
        for lead in known.leads.values()
        if lead.client == client and start <= lead.received_at < end
    ]
    qualified = [lead for lead in ranged if lead.status == "qualified"]
    reached = {m.lead: m.status for m in known.messages.values() if m.status != "delivered"}
    reached |= {m.lead: m.status for m in known.messages.values() if m.status == "delivered"}
    contacted = [lead for lead in qualified if lead.id in reached]
    delivered = [lead for lead in contacted if reached[lead.id] == "delivered"]
    return Funnel(len(ranged), len(qualified), len(contacted), len(delivered))


def expected_delivery(
    known: Known, client: UUID, start: datetime, end: datetime
) -> dict[str, list[DeliveryCounts]]:
    ranged = [
        m for m in known.messages.values() if m.client == client and start <= m.created_at < end
    ]

    def counts(key: str | None, group: list[Message]) -> DeliveryCounts:
        return DeliveryCounts(
            key,
            len(group),
            sum(m.status in ATTEMPTED_STATUSES for m in group),
            sum(m.status == "delivered" for m in group),
            sum(m.status == "bounced" for m in group),
            sum(m.id in known.complained for m in group),
            sum(m.status == "failed" for m in group),
        )

    def grouped(key_of: Any) -> list[DeliveryCounts]:
        keys = sorted({key_of(m) for m in ranged}, key=lambda k: (k is None, k or ""))
        return [counts(k, [m for m in ranged if key_of(m) == k]) for k in keys]

    return {"provider": grouped(lambda m: m.provider), "type": grouped(lambda m: m.type)}


# ---------------------------------------------------------------- writing rows


@dataclass(frozen=True)
class Tenant:
    client: UUID
    user: UUID


async def _connect(url: str) -> psycopg.AsyncConnection[Any]:
    # Never prepared: through a transaction pooler (.ci/run's third pass) a statement
    # prepared on one server connection is unknown, or already known, on the next.
    return await psycopg.AsyncConnection.connect(url, autocommit=True, prepare_threshold=None)


async def _tenant(url: str) -> Tenant:
    slug = f"rollup-{uuid4().hex[:10]}"
    user = uuid4()
    async with await _connect(url) as conn:
        cur = await conn.execute(
            "INSERT INTO public.clients (name, slug) VALUES (%s, %s) RETURNING id", (slug, slug)
        )
        row = await cur.fetchone()
        assert row is not None
        await conn.execute(
            "INSERT INTO public.profiles (id, client_id, email, role) VALUES (%s, %s, %s, 'member')",
            (user, row[0], f"member@{slug}.example"),
        )
    return Tenant(row[0], user)


async def _populate(url: str, tenant: Tenant, known: Known, rng: random.Random) -> None:
    """About 150 leads over three days, 0-3 messages each, a few complaints; written the
    way LQS writes them: many small statements and some batches."""
    leads = [
        Lead(
            uuid4(),
            tenant.client,
            DAY0 + timedelta(seconds=rng.randrange(3 * 86_400)),
            rng.choice(STATUSES),
        )
        for _ in range(150)
    ]
    messages = []
    for lead in leads:
        for _ in range(rng.choice((0, 0, 1, 2, 3))):
            channel = rng.choice(tuple(PROVIDERS))
            status = rng.choice(MESSAGE_STATUSES)
            messages.append(
                Message(
                    uuid4(),
                    lead.id,
                    tenant.client,
                    lead.received_at + timedelta(seconds=rng.randrange(7_200)),
                    channel,
                    status,
                    None if status in ("pending", "rejected") else rng.choice(PROVIDERS[channel]),
                )
            )
    async with await _connect(url) as conn:
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO public.leads (id, client_id, email, status, received_at)"
                " VALUES (%s, %s, %s, %s, %s)",
                [
                    (x.id, x.client, f"{x.id.hex}@lead.example", x.status, x.received_at)
                    for x in leads
                ],
            )
            await cur.executemany(
                "INSERT INTO public.communications"
                " (id, lead_id, client_id, type, recipient, status, provider, created_at)"
                " VALUES (%s, %s, %s, %s, 'someone', %s, %s, %s)",
                [(m.id, m.lead, m.client, m.type, m.status, m.provider, m.created_at) for m in messages],
            )  # fmt: skip
        for message in rng.sample(messages, k=len(messages) // 10):
            await _complain(conn, message)
            known.complained.add(message.id)
    known.leads |= {x.id: x for x in leads}
    known.messages |= {m.id: m for m in messages}


async def _complain(conn: psycopg.AsyncConnection[Any], message: Message) -> None:
    await conn.execute(
        "INSERT INTO public.provider_events (client_id, provider, event_id, communication_id,"
        " event_type, kind, payload) VALUES (%s, 'resend', %s, %s, 'email.complained',"
        " 'complained', '{}')",
        (message.client, uuid4().hex, message.id),
    )


async def _add_lead(
    conn: psycopg.AsyncConnection[Any], client: UUID, at: datetime, status: str = "queued"
) -> None:
    await conn.execute(
        "INSERT INTO public.leads (client_id, email, received_at, status)"
        " VALUES (%s, 'someone@lead.example', %s, %s)",
        (client, at, status),
    )


async def _change(url: str, known: Known, client: UUID, rng: random.Random) -> None:
    """What happens to old rows after the fact: leads reprocessed, messages delivered or
    bounced by late webhooks, new messages for old leads, complaints, a lead erased."""
    mine = [x for x in known.leads.values() if x.client == client]
    messages = [m for m in known.messages.values() if m.client == client]
    async with await _connect(url) as conn:
        for lead in rng.sample(mine, k=10):
            lead.status = rng.choice(STATUSES)
            await conn.execute(
                "UPDATE public.leads SET status = %s WHERE id = %s", (lead.status, lead.id)
            )
        late = rng.sample(messages, k=15)
        for message in late:
            message.status = rng.choice(("delivered", "bounced", "failed"))
            message.provider = message.provider or PROVIDERS[message.type][0]
        await conn.execute(
            "UPDATE public.communications AS c SET status = v.status, provider = v.provider"
            " FROM unnest(%s::uuid[], %s::text[], %s::text[]) AS v(id, status, provider)"
            " WHERE c.id = v.id",
            (
                [m.id for m in late],
                [m.status for m in late],
                [m.provider for m in late],
            ),
        )
        for lead in rng.sample(mine, k=5):
            message = Message(
                uuid4(), lead.id, client, DAY0 + timedelta(days=2, hours=5), "sms", "sent", "twilio"
            )
            await conn.execute(
                "INSERT INTO public.communications"
                " (id, lead_id, client_id, type, recipient, status, provider, created_at)"
                " VALUES (%s, %s, %s, 'sms', '+15550100', 'sent', 'twilio', %s)",
                (message.id, lead.id, client, message.created_at),
            )
            known.messages[message.id] = message
        fresh = [m for m in messages if m.id not in known.complained]
        for message in rng.sample(fresh, k=3):
            await _complain(conn, message)
            known.complained.add(message.id)
        erased = rng.choice(mine)
        await conn.execute("DELETE FROM public.leads WHERE id = %s", (erased.id,))
        del known.leads[erased.id]
        for gone in [m.id for m in known.messages.values() if m.lead == erased.id]:
            del known.messages[gone]
            known.complained.discard(gone)


# ---------------------------------------------------------------- reading them


WINDOWS: list[tuple[datetime, datetime, Bucket]] = [
    (DAY0, DAY0 + timedelta(days=3), "day"),
    (DAY0 - timedelta(days=1), DAY0 + timedelta(days=5), "hour"),
    (DAY0 + timedelta(hours=5, minutes=17), DAY0 + timedelta(days=1, hours=20, minutes=3), "hour"),
    (DAY0 + timedelta(hours=30, seconds=1), DAY0 + timedelta(hours=52, seconds=59), "day"),
    (DAY0 + timedelta(hours=7, minutes=10), DAY0 + timedelta(hours=7, minutes=50), "hour"),
    (DAY0 + timedelta(hours=40), DAY0 + timedelta(hours=41), "hour"),
]


async def _assert_exact(pool: AsyncConnectionPool, known: Known, tenant: Tenant) -> None:
    for start, end, bucket in WINDOWS:
        async with tenant_session(pool, tenant.user) as conn:
            outcomes = await leads_by_outcome(conn, tenant.client, start, end, bucket)
            funnel = await lead_funnel(conn, tenant.client, start, end)
            delivery = await delivery_counts(conn, tenant.client, start, end)
        window = f"{start.isoformat()}..{end.isoformat()} by {bucket}"
        assert outcomes == expected_outcomes(known, tenant.client, start, end, bucket), window
        assert funnel == expected_funnel(known, tenant.client, start, end), window
        assert delivery == expected_delivery(known, tenant.client, start, end), window


async def _stale_hours(url: str, client: UUID) -> int:
    async with await _connect(url) as conn:
        cur = await conn.execute(
            "SELECT count(DISTINCT hour) FROM public.stats_stale_hours WHERE client_id = %s",
            (client,),
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def _refresh_all(url: str) -> int:
    async with await _connect(url) as conn:
        total = 0
        while recounted := await refresh_rollup(conn, 50):
            total += recounted
    return total


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("most_ranges", [MAX_LIVE_RANGES, 2])
async def test_the_rollup_answers_what_a_live_count_answers_before_and_after_changes(
    migrated_db: str, pool: AsyncConnectionPool, most_ranges: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With 2, most windows count the gaps between their live hours live too.
    monkeypatch.setattr(tenant_stats, "MAX_LIVE_RANGES", most_ranges)
    rng = random.Random(20261206)
    known = Known()
    a, b = await _tenant(migrated_db), await _tenant(migrated_db)
    await _populate(migrated_db, a, known, rng)
    await _populate(migrated_db, b, known, rng)

    assert await _stale_hours(migrated_db, a.client) > 24  # every written hour is logged
    await _assert_exact(pool, known, a)  # all counted live

    assert await _refresh_all(migrated_db) > 48
    assert await _stale_hours(migrated_db, a.client) == 0
    await _assert_exact(pool, known, a)  # all read from the rollup, edges aside
    await _assert_exact(pool, known, b)

    await _change(migrated_db, known, a.client, rng)
    assert await _stale_hours(migrated_db, a.client) > 0
    await _assert_exact(pool, known, a)  # the changed hours counted live
    await _assert_exact(pool, known, b)

    await _refresh_all(migrated_db)
    await _assert_exact(pool, known, a)
    await _assert_exact(pool, known, b)


async def test_a_write_committed_after_a_refresh_began_stays_logged(
    migrated_db: str, pool: AsyncConnectionPool
) -> None:
    tenant = await _tenant(migrated_db)
    known = Known()
    at = DAY0 + timedelta(days=10, hours=3, minutes=5)
    async with await _connect(migrated_db) as writer, await _connect(migrated_db) as other:
        await writer.execute("BEGIN")
        lead = Lead(uuid4(), tenant.client, at, "queued")
        await writer.execute(
            "INSERT INTO public.leads (id, client_id, email, status, received_at)"
            " VALUES (%s, %s, 'late@lead.example', 'queued', %s)",
            (lead.id, tenant.client, at),
        )
        # The refresh cannot see the uncommitted lead, nor its log entry.
        await refresh_rollup(other, 10_000)
        await writer.execute("COMMIT")
    known.leads[lead.id] = lead

    assert await _stale_hours(migrated_db, tenant.client) == 1
    whole_day = (DAY0 + timedelta(days=10), DAY0 + timedelta(days=11))
    async with tenant_session(pool, tenant.user) as conn:
        assert await lead_funnel(conn, tenant.client, *whole_day) == Funnel(1, 0, 0, 0)
    await _refresh_all(migrated_db)
    assert await _stale_hours(migrated_db, tenant.client) == 0
    async with tenant_session(pool, tenant.user) as conn:
        assert await lead_funnel(conn, tenant.client, *whole_day) == Funnel(1, 0, 0, 0)


async def test_one_refresh_runs_at_a_time(migrated_db: str) -> None:
    tenant = await _tenant(migrated_db)
    async with await _connect(migrated_db) as conn:
        await _add_lead(conn, tenant.client, DAY0 + timedelta(days=20))
    async with await _connect(migrated_db) as first, await _connect(migrated_db) as second:
        await first.execute("BEGIN")
        await first.execute("SELECT public.lqs_stats_refresh(0)")  # holds the lock
        assert await refresh_rollup(second, 10_000) == 0
        assert await _stale_hours(migrated_db, tenant.client) == 1
        await first.execute("COMMIT")
        assert await refresh_rollup(second, 10_000) >= 1
    assert await _stale_hours(migrated_db, tenant.client) == 0


async def test_a_signed_in_users_edit_is_logged_and_the_log_is_theirs_to_read_only(
    migrated_db: str, pool: AsyncConnectionPool
) -> None:
    a, b = await _tenant(migrated_db), await _tenant(migrated_db)
    async with await _connect(migrated_db) as conn:
        await _refresh_all(migrated_db)
        for tenant in (a, b):
            await _add_lead(conn, tenant.client, DAY0 + timedelta(days=30))
        await _refresh_all(migrated_db)

    async with tenant_session(pool, a.user) as conn:
        # Users may edit their client's leads (a SECURITY DEFINER trigger logs the hour).
        await conn.execute(
            "UPDATE public.leads SET first_name = 'Ada' WHERE client_id = %s", (a.client,)
        )
        cur = await conn.execute("SELECT client_id FROM public.stats_stale_hours")
        assert {row[0] for row in await cur.fetchall()} == {a.client}
        cur = await conn.execute("SELECT DISTINCT client_id FROM public.stats_lead_hours")
        assert {row[0] for row in await cur.fetchall()} == {a.client}
    for statement in (
        "INSERT INTO public.stats_stale_hours (client_id, hour) VALUES (%s, now())",
        "DELETE FROM public.stats_lead_hours WHERE client_id = %s",
        "SELECT public.lqs_stats_refresh(1) WHERE %s IS NOT NULL",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            async with tenant_session(pool, a.user) as conn:
                await conn.execute(statement.encode(), (a.client,))  # type: ignore[arg-type]


async def test_deleting_a_client_drops_its_counts_and_its_log_drains(migrated_db: str) -> None:
    tenant = await _tenant(migrated_db)
    async with await _connect(migrated_db) as conn:
        await _add_lead(conn, tenant.client, DAY0 + timedelta(days=40))
        await _refresh_all(migrated_db)
        await _add_lead(conn, tenant.client, DAY0 + timedelta(days=41))
        await conn.execute("DELETE FROM public.clients WHERE id = %s", (tenant.client,))
        await _refresh_all(migrated_db)
        for table in ("stats_lead_hours", "stats_stale_hours"):
            cur = await conn.execute(
                f"SELECT count(*) FROM public.{table} WHERE client_id = %s".encode(),  # type: ignore[arg-type]
                (tenant.client,),
            )
            assert await cur.fetchone() == (0,)


async def test_the_worker_rolls_up_once_and_while_it_runs(migrated_db: str) -> None:
    tenant = await _tenant(migrated_db)

    async def add_lead(day: int) -> None:
        async with await _connect(migrated_db) as conn:
            await _add_lead(conn, tenant.client, DAY0 + timedelta(days=day), "nurture")

    await add_lead(50)
    await run_worker(migrated_db, worker_config(), once=True)
    assert await _stale_hours(migrated_db, tenant.client) == 0

    stop = asyncio.Event()
    worker = asyncio.create_task(
        run_worker(migrated_db, worker_config(poll_interval=0.2), stop=stop, stats_interval=0.1)
    )
    try:
        await add_lead(51)
        for _ in range(200):
            if await _stale_hours(migrated_db, tenant.client) == 0:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the worker did not roll the new hour up")
    finally:
        stop.set()
        await asyncio.wait_for(worker, timeout=30)
    async with await _connect(migrated_db) as conn:
        cur = await conn.execute(
            "SELECT sum(leads) FROM public.stats_lead_hours WHERE client_id = %s", (tenant.client,)
        )
        assert await cur.fetchone() == (2,)


async def test_a_refresh_cancelled_by_the_timeout_retries_with_fewer_hours(
    migrated_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tried: list[int] = []
    real = worker_run.refresh_rollup

    async def slow_above_two(conn: psycopg.AsyncConnection[Any], batch: int) -> int:
        tried.append(batch)
        if batch > 2:
            raise psycopg.errors.QueryCanceled("canceling statement due to statement timeout")
        return await real(conn, batch)

    monkeypatch.setattr(worker_run, "refresh_rollup", slow_above_two)
    pool = AsyncConnectionPool(
        migrated_db, min_size=1, max_size=1, open=False, kwargs={"prepare_threshold": None}
    )
    await pool.open()
    try:
        await refresh_stats(pool, batch=16)
    finally:
        await pool.close()
    assert tried[:4] == [16, 8, 4, 2]
    assert set(tried[4:]) <= {2}


async def test_migration_0018_logs_the_hours_already_there(
    empty_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database that held leads and messages before the rollup existed: the migration logs
    every hour of them, the statistics are exact at once, and the refresh rolls them up."""
    with connect(empty_db) as conn:
        migrate(conn, [m for m in load_migrations() if m.version < 18])
    rng = random.Random(18)
    known = Known()
    tenant = await _tenant(empty_db)
    await _populate(empty_db, tenant, known, rng)
    with connect(empty_db) as conn:
        assert [
            m.version for m in migrate(conn, [m for m in load_migrations() if m.version <= 18])
        ] == [18]

    pool = AsyncConnectionPool(
        empty_db, min_size=1, max_size=1, open=False, kwargs={"prepare_threshold": None}
    )
    await pool.open()
    try:
        assert await _stale_hours(empty_db, tenant.client) > 24
        await _assert_exact(pool, known, tenant)
        await _refresh_all(empty_db)
        assert await _stale_hours(empty_db, tenant.client) == 0
        await _assert_exact(pool, known, tenant)
    finally:
        await pool.close()


async def test_a_refresh_without_a_free_connection_skips_its_turn(
    migrated_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """During an outage, or with every connection busy, the statistics loop waits briefly
    for a connection and tries again next turn: it neither fails the worker nor holds up
    its stop."""
    monkeypatch.setattr(worker_run, "STATS_CHECKOUT_TIMEOUT", 0.1)
    pool = AsyncConnectionPool(
        migrated_db, min_size=1, max_size=1, open=False, kwargs={"prepare_threshold": None}
    )
    await pool.open()
    stop = asyncio.Event()
    try:
        async with pool.connection():  # the only connection, busy
            with pytest.raises(PoolTimeout):
                await refresh_stats(pool, checkout_timeout=0.1)
            loop = asyncio.create_task(
                worker_run._refresh_stats_forever(pool, 0.05, stop, worker_run.Progress())
            )
            await asyncio.sleep(0.5)  # several turns, each skipped
            assert not loop.done()
            stop.set()
            await asyncio.wait_for(loop, timeout=2)
    finally:
        await pool.close()
