"""The worker's event applier on a real database: batches applied once each, by two
appliers at once, and after the applier is cut off in the middle of a batch.

Events are stored as the webhook receiver stores them (:func:`store_events`); the
receiver itself is tested in test_webhook_api.py, the transitions in
test_delivery_events.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from lqs.db.clients import create_client
from lqs.db.events import EVENTS_PENDING_CHANNEL, apply_pending_events, store_events
from lqs.db.pool import open_pool
from lqs.domain.events import DeliveryEvent, EventKind
from lqs.worker.events import drain_events
from lqs.worker.run import run_worker
from tests.configs import worker_config
from tests.conftest import direct_url

WHEN = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
async def pool(migrated_db: str) -> AsyncIterator[AsyncConnectionPool]:
    opened = await open_pool(migrated_db, min_size=1, max_size=8, worker=True)
    yield opened
    await opened.close()


async def _rows(pool: AsyncConnectionPool, query: str, *params: Any) -> list[dict[str, Any]]:
    """The rows of ``query``: positional parameters, or one mapping of named ones."""
    named = len(params) == 1 and isinstance(params[0], dict)
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query.encode(), params[0] if named else params)
        return await cur.fetchall()


async def _sent_emails(pool: AsyncConnectionPool, n: int) -> tuple[UUID, list[dict[str, Any]]]:
    """A client with ``n`` leads and one sent email each (message id ``re-<i>``)."""
    slug = f"ap-{uuid.uuid4().hex[:10]}"
    async with pool.connection() as conn:
        client = await create_client(conn, slug, slug, {})
        await conn.execute(
            "WITH l AS (INSERT INTO public.leads (client_id, email, consent_status, status)"
            "  SELECT %(c)s, 'lead' || i || '@buyer.example', 'granted', 'qualified'"
            "  FROM generate_series(1, %(n)s) AS i RETURNING id, email)"
            " INSERT INTO public.communications (client_id, lead_id, type, recipient, status,"
            "  provider, external_id, sent_at)"
            " SELECT %(c)s, l.id, 'email', l.email, 'sent', 'resend',"
            "  're-' || split_part(l.email, '@', 1), now() FROM l",
            {"c": client.id, "n": n},
        )
    comms = await _rows(
        pool,
        "SELECT id, recipient, external_id FROM public.communications WHERE client_id = %s"
        " ORDER BY recipient",
        client.id,
    )
    return client.id, comms


def _events(comms: list[dict[str, Any]], complain_every: int) -> list[DeliveryEvent]:
    """For each email: delivered, then sent (late, never downgrades); every
    ``complain_every``-th also a complaint."""
    events = []
    for i, comm in enumerate(comms):
        mid = comm["external_id"]
        events.append(DeliveryEvent("resend", f"dl-{mid}", EventKind.DELIVERED,
                                    "email.delivered", mid, occurred_at=WHEN))  # fmt: skip
        events.append(DeliveryEvent("resend", f"st-{mid}", EventKind.ACCEPTED, "email.sent",
                                    mid, occurred_at=WHEN - timedelta(seconds=1)))  # fmt: skip
        if i % complain_every == 0:
            events.append(DeliveryEvent("resend", f"cp-{mid}", EventKind.COMPLAINED,
                                        "email.complained", mid,
                                        occurred_at=WHEN + timedelta(seconds=1)))  # fmt: skip
    return events


async def _store(pool: AsyncConnectionPool, client_id: UUID, events: list[DeliveryEvent]) -> None:
    # As SendGrid posts them: up to 1,000 a request.
    for start in range(0, len(events), 1000):
        async with pool.connection() as conn:
            await store_events(conn, client_id, "resend", events[start : start + 1000])


async def _assert_applied_once(
    pool: AsyncConnectionPool, client_id: UUID, comms: int, events: int, complaints: int
) -> None:
    [state] = await _rows(
        pool,
        "SELECT (SELECT count(*) FROM public.communications WHERE client_id = %(c)s"
        "         AND status = 'delivered' AND delivered_at = %(when)s) AS delivered,"
        " (SELECT count(*) FROM public.provider_events WHERE client_id = %(c)s"
        "   AND attempted_at IS NOT NULL AND applied_at IS NOT NULL"
        "   AND communication_id IS NOT NULL) AS applied,"
        " (SELECT count(*) FROM public.provider_events WHERE client_id = %(c)s) AS stored,"
        " (SELECT count(*) FROM public.suppressions WHERE client_id = %(c)s) AS suppressed,"
        " (SELECT count(*) FROM public.consent_history WHERE client_id = %(c)s) AS withdrawn",
        {"c": client_id, "when": WHEN},
    )
    assert state == {
        "delivered": comms,
        "applied": events,
        "stored": events,
        "suppressed": complaints,
        "withdrawn": complaints,
    }


# ---------------------------------------------------------------------------- batches


async def test_a_batch_folds_each_messages_events_in_order_and_marks_every_event(
    pool: AsyncConnectionPool,
) -> None:
    client_id, comms = await _sent_emails(pool, 30)
    events = _events(comms, complain_every=10)
    await _store(pool, client_id, events)

    async with pool.connection() as conn:
        done = await apply_pending_events(conn, limit=len(events) + 1)

    assert (done.candidates, done.applied, done.waiting) == (len(events),) * 2 + (0,)
    assert done.changed == 30
    await _assert_applied_once(pool, client_id, 30, len(events), 3)
    effects = await _rows(
        pool,
        "SELECT event_type, effect, count(*) AS n FROM public.provider_events"
        " WHERE client_id = %s GROUP BY 1, 2 ORDER BY 1",
        client_id,
    )
    assert [(e["event_type"], e["effect"], e["n"]) for e in effects] == [
        ("email.complained", "suppressed (complaint)", 3),
        ("email.delivered", "delivered", 30),
        ("email.sent", "no change", 30),
    ]


async def test_two_appliers_on_the_same_batches_apply_each_event_once(
    pool: AsyncConnectionPool,
) -> None:
    client_id, comms = await _sent_emails(pool, 400)
    events = _events(comms, complain_every=20)
    await _store(pool, client_id, events)

    async def applier() -> int:
        return (await drain_events(pool, batch_size=200)).applied

    applied = await asyncio.gather(applier(), applier())

    assert sum(applied) == len(events)
    await _assert_applied_once(pool, client_id, 400, len(events), 20)


async def test_an_event_whose_message_another_transaction_holds_waits_without_blocking(
    pool: AsyncConnectionPool, migrated_db: str
) -> None:
    # An erasure (or an acknowledgement) holding a communication must not make the
    # applier wait while it holds event rows that transaction may want next: a deadlock.
    client_id, comms = await _sent_emails(pool, 3)
    events = _events(comms, complain_every=100)
    await _store(pool, client_id, events)
    held = comms[1]
    async with await psycopg.AsyncConnection.connect(migrated_db) as other:
        await other.execute(
            "SELECT 1 FROM public.communications WHERE id = %s FOR UPDATE", (held["id"],)
        )
        async with pool.connection() as conn:
            done = await asyncio.wait_for(apply_pending_events(conn), timeout=10)
        of_held = sum(1 for e in events if e.external_id == held["external_id"])
        assert of_held == 2
        assert (done.applied, done.held, done.waiting) == (len(events) - of_held, of_held, 0)
        pending = await _rows(
            pool,
            "SELECT external_id FROM public.provider_events WHERE client_id = %s"
            " AND attempted_at IS NULL AND communication_id IS NULL",
            client_id,
        )
        assert {p["external_id"] for p in pending} == {held["external_id"]}
        await other.rollback()

    async with pool.connection() as conn:
        done = await apply_pending_events(conn)
    assert (done.applied, done.held) == (of_held, 0)
    await _assert_applied_once(pool, client_id, 3, len(events), 1)


async def test_storing_wakes_the_applier_once_per_request_with_new_events(
    pool: AsyncConnectionPool, migrated_db: str
) -> None:
    client_id, comms = await _sent_emails(pool, 2)
    events = _events(comms, complain_every=100)
    # LISTEN needs a session of its own: through a transaction pooler, the direct URL.
    listening = direct_url(migrated_db)
    async with await psycopg.AsyncConnection.connect(listening, autocommit=True) as listener:
        await listener.execute(f"LISTEN {EVENTS_PENDING_CHANNEL}")
        await _store(pool, client_id, events)
        await _store(pool, client_id, events)  # all duplicates: nothing new, no wake-up
        heard = [n async for n in listener.notifies(timeout=0.5)]

    assert [n.channel for n in heard] == [EVENTS_PENDING_CHANNEL]


# ---------------------------------------------------------------------------- crash safety


async def _blocked_backend(pool: AsyncConnectionPool, like: str) -> int:
    """The backend waiting for a lock while running a statement ``LIKE like``."""
    deadline = asyncio.get_running_loop().time() + 20
    while asyncio.get_running_loop().time() < deadline:
        rows = await _rows(
            pool,
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database() AND query LIKE %s",
            like,
        )
        if rows:
            return int(rows[0]["pid"])
        await asyncio.sleep(0.01)
    raise AssertionError(f"no backend waited for a lock in {like!r}")


async def test_an_applier_cut_off_mid_batch_loses_nothing_and_resumes_applying_each_once(
    pool: AsyncConnectionPool, migrated_db: str
) -> None:
    client_id, comms = await _sent_emails(pool, 600)
    events = _events(comms, complain_every=50)
    await _store(pool, client_id, events)
    # Another transaction adding the same suppression as the batch's first complaint
    # makes the applier wait there: after it wrote the communications, before its commit.
    first_complained = comms[0]["recipient"]
    async with await psycopg.AsyncConnection.connect(migrated_db) as blocker:
        await blocker.execute(
            "INSERT INTO public.suppressions (client_id, channel, recipient, reason, source)"
            " VALUES (%s, 'email', %s, 'complaint', 'test')",
            (client_id, first_complained),
        )
        stop = asyncio.Event()
        worker = asyncio.create_task(
            run_worker(migrated_db, worker_config(poll_interval=0.2), stop=stop, process=False,
                       dispatch=False)
        )  # fmt: skip
        try:
            applier_pid = await _blocked_backend(pool, "%INSERT INTO public.suppressions%")
            async with pool.connection() as conn:
                await conn.execute("SELECT pg_terminate_backend(%s)", (applier_pid,))
            # Its whole batch rolled back: nothing applied, nothing suppressed.
            [state] = await _rows(
                pool,
                "SELECT (SELECT count(*) FROM public.provider_events WHERE client_id = %(c)s"
                "         AND attempted_at IS NOT NULL) AS attempted,"
                " (SELECT count(*) FROM public.communications WHERE client_id = %(c)s"
                "   AND status = 'delivered') AS delivered",
                {"c": client_id},
            )
            assert state == {"attempted": 0, "delivered": 0}
            # The supervisor reconnects and claims the batch again (blocked again here).
            await _blocked_backend(pool, "%INSERT INTO public.suppressions%")
            await blocker.rollback()
            deadline = asyncio.get_running_loop().time() + 30
            while await _rows(
                pool,
                "SELECT 1 FROM public.provider_events WHERE client_id = %s"
                " AND attempted_at IS NULL LIMIT 1",
                client_id,
            ):
                assert asyncio.get_running_loop().time() < deadline, "the worker never resumed"
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            totals = await asyncio.wait_for(worker, timeout=30)

    assert totals.interruptions >= 1
    await _assert_applied_once(pool, client_id, 600, len(events), 12)
