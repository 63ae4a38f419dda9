"""Delivery events against a real database: stored once, applied to the right client's
message only, in any order relative to our own record of the send, and seen by the
dispatcher before it sends again.

Events are built as :class:`DeliveryEvent` values here (the providers' parsers are tested
on their own); the webhook receivers that produce them are tested in test_webhook_api.py.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from lqs.db.clients import create_client
from lqs.db.communications import communication_timeline
from lqs.db.connection import transaction_pooled
from lqs.db.dispatch import Ack, Attempt, record_acks
from lqs.db.events import apply_pending_events, store_events
from lqs.db.pool import open_pool
from lqs.domain.delivery import NextStep, RetryPolicy, Verdict
from lqs.domain.events import DeliveryEvent, EventKind
from lqs.domain.unsubscribe import UnsubscribeLinks
from lqs.providers.base import OutboundMessage, SendResult
from lqs.worker.dispatcher import Dispatcher, DispatcherOptions
from tests.pending_events import Ingested, ingest

FAST = RetryPolicy(base_delay=0.001, max_delay=0.01, horizon=3600)
OWNER = "events-test-worker"
WHEN = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)

DELIVERY = {
    "email": {"primary": "resend"},
    "resend": {"api_key": "re_fake_key", "from_address": "lqs@sender.example",
               "base_url": "http://127.0.0.1:9"},
}  # fmt: skip


@pytest.fixture(scope="module")
async def pool(migrated_db: str) -> AsyncIterator[AsyncConnectionPool]:
    opened = await open_pool(migrated_db, min_size=1, max_size=8, worker=True)
    yield opened
    await opened.close()


# ---------------------------------------------------------------------------- arrange


async def _client(pool: AsyncConnectionPool) -> UUID:
    slug = f"ev-{uuid.uuid4().hex[:10]}"
    async with pool.connection() as conn:
        client = await create_client(conn, slug, slug, {"delivery": DELIVERY})
    return client.id


async def _lead(
    pool: AsyncConnectionPool, client_id: UUID, email: str, phone: str | None = None
) -> UUID:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO public.leads (client_id, email, phone, consent_status, status)"
            " VALUES (%s, %s, %s, 'granted', 'qualified') RETURNING id",
            (client_id, email, phone),
        )
        row = await cur.fetchone()
    assert row is not None
    return UUID(str(row[0]))


async def _communication(
    pool: AsyncConnectionPool,
    client_id: UUID,
    lead_id: UUID,
    recipient: str,
    *,
    channel: str = "email",
    status: str = "pending",
    provider: str | None = None,
    external_id: str | None = None,
    queued: bool = False,
    leased: bool = False,
    retry_count: int = 0,
) -> UUID:
    """A communication; ``queued``: due now; ``leased``: attempt 1 held by ``OWNER`` (and
    not due for an hour, so no dispatcher in this module claims it)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO public.communications (client_id, lead_id, type, recipient, subject,"
            " content, status, provider, external_id, retry_count)"
            " VALUES (%s, %s, %s, %s, 'Hello', 'Thanks for your interest', %s, %s, %s, %s)"
            " RETURNING id",
            (client_id, lead_id, channel, recipient, status, provider, external_id, retry_count),
        )
        row = await cur.fetchone()
        assert row is not None
        comm_id = UUID(str(row[0]))
        if queued or leased:
            await conn.execute(
                "INSERT INTO public.delivery_queue (communication_id, client_id, to_lead,"
                " attempts, lease_owner, lease_expires_at, next_attempt_at)"
                " VALUES (%(id)s, %(client)s, true, %(attempts)s, %(owner)s,"
                "  CASE WHEN %(leased)s THEN now() + interval '1 hour' END,"
                "  CASE WHEN %(leased)s THEN now() + interval '1 hour' ELSE now() END)",
                {
                    "id": comm_id,
                    "client": client_id,
                    "attempts": 1 if leased else retry_count,
                    "owner": OWNER if leased else None,
                    "leased": leased,
                },
            )
    return comm_id


def _event(
    kind: EventKind,
    raw_type: str,
    message_id: str | None,
    *,
    provider: str = "resend",
    event_id: str | None = None,
    occurred_at: datetime | None = WHEN,
    communication_id: UUID | None = None,
    reason: str | None = None,
    error_code: str | None = None,
) -> DeliveryEvent:
    return DeliveryEvent(
        provider=provider,
        event_id=event_id or f"evt_{uuid.uuid4().hex}",
        kind=kind,
        raw_type=raw_type,
        external_id=message_id,
        occurred_at=occurred_at,
        communication_id=communication_id,
        reason=reason,
        error_code=error_code,
        payload={"type": raw_type, "data": {"email_id": message_id}},
    )


def _message_id() -> str:
    return f"re_{uuid.uuid4().hex}"


async def _ingest(
    pool: AsyncConnectionPool, client_id: UUID, *events: DeliveryEvent, provider: str = "resend"
) -> Ingested:
    return await ingest(pool, client_id, provider, list(events))


async def _rows(pool: AsyncConnectionPool, sql: str, *params: Any) -> list[dict[str, Any]]:
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql.encode(), params)
        return await cur.fetchall()


async def _comm(pool: AsyncConnectionPool, comm_id: UUID) -> dict[str, Any]:
    [row] = await _rows(pool, "SELECT * FROM public.communications WHERE id = %s", comm_id)
    return row


async def _events_of(pool: AsyncConnectionPool, client_id: UUID) -> list[dict[str, Any]]:
    return await _rows(
        pool, "SELECT * FROM public.provider_events WHERE client_id = %s ORDER BY id", client_id
    )


async def _suppressions(pool: AsyncConnectionPool, client_id: UUID) -> list[tuple[str, str, str]]:
    rows = await _rows(
        pool,
        "SELECT channel, recipient, reason FROM public.suppressions WHERE client_id = %s",
        client_id,
    )
    return [(r["channel"], r["recipient"], r["reason"]) for r in rows]


async def _history(pool: AsyncConnectionPool, client_id: UUID) -> list[dict[str, Any]]:
    return await _rows(
        pool, "SELECT * FROM public.consent_history WHERE client_id = %s ORDER BY id", client_id
    )


async def _consent(pool: AsyncConnectionPool, lead_id: UUID) -> str:
    [row] = await _rows(pool, "SELECT consent_status FROM public.leads WHERE id = %s", lead_id)
    return str(row["consent_status"])


def _sent_ack(comm_id: UUID, client_id: UUID, external_id: str, **fields: Any) -> Ack:
    return Ack(
        comm_id,
        1,
        NextStep.SENT,
        0,
        provider="resend",
        external_id=external_id,
        external_reference={"id": external_id},
        sent_at=datetime.now(UTC),
        client_id=client_id,
        **fields,
    )


async def _record(pool: AsyncConnectionPool, *acks: Ack) -> set[UUID]:
    async with pool.connection() as conn:
        return await record_acks(conn, OWNER, list(acks))


# ---------------------------------------------------------------------------- storing once


async def test_an_event_is_stored_once_and_a_duplicate_has_no_second_effect(
    pool: AsyncConnectionPool,
) -> None:
    client_id = await _client(pool)
    lead_id = await _lead(pool, client_id, "ann@buyer.example")
    message_id = _message_id()
    await _communication(
        pool, client_id, lead_id, "ann@buyer.example", status="delivered",
        provider="resend", external_id=message_id,
    )  # fmt: skip
    complaint = _event(EventKind.COMPLAINED, "email.complained", message_id)

    first = await _ingest(pool, client_id, complaint)
    again = await _ingest(pool, client_id, complaint)

    assert (first.stored, first.duplicates, first.unmatched) == (1, 0, 0)
    assert (again.stored, again.duplicates, again.changed) == (0, 1, 0)
    assert len(await _events_of(pool, client_id)) == 1
    assert len(await _history(pool, client_id)) == 1
    assert await _suppressions(pool, client_id) == [("email", "ann@buyer.example", "complaint")]


async def test_the_same_event_ingested_three_times_at_once_has_exactly_one_effect(
    pool: AsyncConnectionPool,
) -> None:
    client_id = await _client(pool)
    lead_id = await _lead(pool, client_id, "bo@buyer.example")
    message_id = _message_id()
    await _communication(
        pool, client_id, lead_id, "bo@buyer.example", status="delivered",
        provider="resend", external_id=message_id,
    )  # fmt: skip
    complaint = _event(EventKind.COMPLAINED, "email.complained", message_id)

    outcomes = await asyncio.gather(*(_ingest(pool, client_id, complaint) for _ in range(3)))

    assert sorted(o.stored for o in outcomes) == [0, 0, 1]
    assert sum(o.duplicates for o in outcomes) == 2
    assert len(await _events_of(pool, client_id)) == 1
    assert len(await _history(pool, client_id)) == 1
    assert len(await _suppressions(pool, client_id)) == 1


async def test_the_same_event_without_a_message_id_at_once_is_stored_once(
    pool: AsyncConnectionPool,
) -> None:
    # No message id: no advisory lock, so only the unique index keeps the copies apart.
    client_id = await _client(pool)
    other = _event(EventKind.OTHER, "email.scheduled", None)

    outcomes = await asyncio.gather(*(_ingest(pool, client_id, other) for _ in range(3)))

    assert sorted(o.stored for o in outcomes) == [0, 0, 1]
    assert len(await _events_of(pool, client_id)) == 1


async def test_an_event_for_an_unknown_message_is_stored_unmatched(
    pool: AsyncConnectionPool,
) -> None:
    client_id = await _client(pool)

    outcome = await _ingest(
        pool, client_id, _event(EventKind.DELIVERED, "email.delivered", "re_nobody_knows")
    )

    assert (outcome.stored, outcome.unmatched, outcome.changed) == (1, 1, 0)
    [row] = await _events_of(pool, client_id)
    assert row["communication_id"] is None
    assert row["applied_at"] is None
    assert (row["external_id"], row["kind"], row["event_type"]) == (
        "re_nobody_knows", "delivered", "email.delivered",
    )  # fmt: skip


async def test_an_event_naming_another_clients_message_changes_nothing_of_theirs(
    pool: AsyncConnectionPool,
) -> None:
    client_a = await _client(pool)
    client_b = await _client(pool)
    lead_b = await _lead(pool, client_b, "cy@victim.example")
    message_b = _message_id()
    comm_b = await _communication(
        pool, client_b, lead_b, "cy@victim.example", status="sent",
        provider="resend", external_id=message_b,
    )  # fmt: skip
    before = await _comm(pool, comm_b)

    by_message = await _ingest(
        pool, client_a, _event(EventKind.BOUNCED, "email.bounced", message_b, reason="gone")
    )
    by_id = await _ingest(
        pool,
        client_a,
        _event(EventKind.COMPLAINED, "email.complained", "re_other", communication_id=comm_b),
    )

    assert (by_message.unmatched, by_id.unmatched) == (1, 1)
    assert await _comm(pool, comm_b) == before
    assert await _suppressions(pool, client_b) == []
    assert await _history(pool, client_b) == []
    assert await _consent(pool, lead_b) == "granted"
    assert await _suppressions(pool, client_a) == []
    assert [e["communication_id"] for e in await _events_of(pool, client_a)] == [None, None]
    assert await _events_of(pool, client_b) == []


# ---------------------------------------------------------------------------- ordering


async def test_delivered_before_our_ack_is_applied_and_the_ack_keeps_it(
    pool: AsyncConnectionPool,
) -> None:
    client_id = await _client(pool)
    lead_id = await _lead(pool, client_id, "dee@buyer.example")
    comm_id = await _communication(pool, client_id, lead_id, "dee@buyer.example", leased=True)
    message_id = _message_id()

    # SendGrid-style: the event carries our id, so it matches before the external id is known.
    outcome = await _ingest(
        pool,
        client_id,
        _event(EventKind.DELIVERED, "email.delivered", message_id, communication_id=comm_id),
    )
    assert outcome.changed == 1
    assert (await _comm(pool, comm_id))["status"] == "delivered"

    held = await _record(pool, _sent_ack(comm_id, client_id, message_id))

    comm = await _comm(pool, comm_id)
    assert held == {comm_id}
    assert (comm["status"], comm["delivered_at"]) == ("delivered", WHEN)
    assert comm["sent_at"] is not None
    assert (comm["external_id"], comm["provider"]) == (message_id, "resend")


async def test_an_event_before_the_external_id_was_recorded_is_applied_by_the_ack(
    pool: AsyncConnectionPool,
) -> None:
    client_id = await _client(pool)
    lead_id = await _lead(pool, client_id, "eve@buyer.example")
    comm_id = await _communication(pool, client_id, lead_id, "eve@buyer.example", leased=True)
    message_id = _message_id()

    early = await _ingest(
        pool, client_id, _event(EventKind.DELIVERED, "email.delivered", message_id)
    )
    assert early.unmatched == 1
    assert (await _comm(pool, comm_id))["status"] == "pending"

    await _record(pool, _sent_ack(comm_id, client_id, message_id))

    comm = await _comm(pool, comm_id)
    assert (comm["status"], comm["delivered_at"], comm["external_id"]) == (
        "delivered", WHEN, message_id,
    )  # fmt: skip
    [row] = await _events_of(pool, client_id)
    assert row["communication_id"] == comm_id
    assert row["applied_at"] is not None
    assert row["effect"] == "delivered"


async def test_a_waiting_hard_bounce_applied_by_the_ack_keeps_its_reason_and_suppresses(
    pool: AsyncConnectionPool,
) -> None:
    client_id = await _client(pool)
    lead_id = await _lead(pool, client_id, "fay@buyer.example")
    comm_id = await _communication(pool, client_id, lead_id, "Fay@Buyer.example", leased=True)
    message_id = _message_id()
    # As parsed from Resend: the reason is in the event and in the raw payload stored.
    bounce = replace(
        _event(EventKind.BOUNCED, "email.bounced", message_id, reason="mailbox gone"),
        payload={"type": "email.bounced", "data": {
            "email_id": message_id, "bounce": {"type": "Permanent", "message": "mailbox gone"},
        }},
    )  # fmt: skip
    await _ingest(pool, client_id, bounce)

    await _record(pool, _sent_ack(comm_id, client_id, message_id))

    comm = await _comm(pool, comm_id)
    assert comm["status"] == "bounced"
    assert "mailbox gone" in comm["error_message"]
    assert await _suppressions(pool, client_id) == [("email", "fay@buyer.example", "bounce")]


async def _blocked_on_a_lock(pool: AsyncConnectionPool, pid: int) -> None:
    """Wait (with a deadline) until backend ``pid`` waits for a lock; through a transaction
    pooler ``pid`` is the pooler's, not a server backend's: then any backend of this test's
    database (only the racing connection can be waiting)."""
    pooled = transaction_pooled(pool.conninfo)
    deadline = asyncio.get_running_loop().time() + 10
    while asyncio.get_running_loop().time() < deadline:
        rows = await _rows(
            pool,
            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database() AND (pid = %s OR %s)",
            pid,
            pooled,
        )
        if rows:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"backend {pid} never waited for a lock")


async def test_the_applier_racing_an_uncommitted_ack_waits_for_it_and_matches(
    pool: AsyncConnectionPool,
) -> None:
    client_id = await _client(pool)
    lead_id = await _lead(pool, client_id, "hoa@buyer.example")
    comm_id = await _communication(pool, client_id, lead_id, "hoa@buyer.example", leased=True)
    message_id = _message_id()
    delivered = _event(EventKind.DELIVERED, "email.delivered", message_id)

    async with pool.connection() as acking, pool.connection() as applying:
        async with acking.transaction():
            await record_acks(acking, OWNER, [_sent_ack(comm_id, client_id, message_id)])
            # Stored after the ack looked for waiting events, before it commits.
            await store_events(applying, client_id, "resend", [delivered])
            await applying.commit()
            apply = asyncio.create_task(apply_pending_events(applying))
            await _blocked_on_a_lock(pool, applying.info.backend_pid)
        outcome = await apply

    assert (outcome.applied, outcome.waiting, outcome.changed) == (1, 0, 1)
    assert (await _comm(pool, comm_id))["status"] == "delivered"


async def test_an_ack_racing_the_applier_finding_no_message_waits_for_it_and_applies_it(
    pool: AsyncConnectionPool,
) -> None:
    client_id = await _client(pool)
    lead_id = await _lead(pool, client_id, "ivo@buyer.example")
    comm_id = await _communication(pool, client_id, lead_id, "ivo@buyer.example", leased=True)
    message_id = _message_id()
    delivered = _event(EventKind.DELIVERED, "email.delivered", message_id)

    async with pool.connection() as acking, pool.connection() as applying:
        await store_events(applying, client_id, "resend", [delivered])
        await applying.commit()
        # The applier's transaction, left open: it holds the message's advisory lock.
        async with applying.transaction():
            outcome = await apply_pending_events(applying)
            ack = asyncio.create_task(
                record_acks(acking, OWNER, [_sent_ack(comm_id, client_id, message_id)])
            )
            await _blocked_on_a_lock(pool, acking.info.backend_pid)
        assert await ack == {comm_id}

    assert outcome.waiting == 1
    assert (await _comm(pool, comm_id))["status"] == "delivered"
    [row] = await _events_of(pool, client_id)
    assert row["communication_id"] == comm_id


async def test_a_late_accepted_event_never_downgrades_delivered(pool: AsyncConnectionPool) -> None:
    client_id = await _client(pool)
    lead_id = await _lead(pool, client_id, "hal@buyer.example")
    message_id = _message_id()
    comm_id = await _communication(
        pool, client_id, lead_id, "hal@buyer.example", status="sent",
        provider="resend", external_id=message_id,
    )  # fmt: skip

    await _ingest(pool, client_id, _event(EventKind.DELIVERED, "email.delivered", message_id))
    late = await _ingest(
        pool,
        client_id,
        _event(EventKind.ACCEPTED, "email.sent", message_id, occurred_at=WHEN - timedelta(1)),
    )

    assert late.changed == 0
    comm = await _comm(pool, comm_id)
    assert (comm["status"], comm["delivered_at"]) == ("delivered", WHEN)
    assert [e["effect"] for e in await _events_of(pool, client_id)] == ["delivered", "no change"]


async def test_delivered_at_is_the_providers_time(pool: AsyncConnectionPool) -> None:
    client_id = await _client(pool)
    lead_id = await _lead(pool, client_id, "ida@buyer.example")
    message_id = _message_id()
    comm_id = await _communication(
        pool, client_id, lead_id, "ida@buyer.example", status="sent",
        provider="resend", external_id=message_id,
    )  # fmt: skip
    provider_time = datetime(2025, 12, 31, 23, 59, 58, tzinfo=UTC)

    await _ingest(
        pool,
        client_id,
        _event(EventKind.DELIVERED, "email.delivered", message_id, occurred_at=provider_time),
    )

    assert (await _comm(pool, comm_id))["delivered_at"] == provider_time


async def test_a_failed_or_rejected_ack_does_not_undo_what_an_event_set(
    pool: AsyncConnectionPool,
) -> None:
    client_id = await _client(pool)
    lead_id = await _lead(pool, client_id, "jo@buyer.example")
    bounced = await _communication(pool, client_id, lead_id, "jo@buyer.example", leased=True)
    delivered = await _communication(pool, client_id, lead_id, "jo@buyer.example", leased=True)
    await _ingest(
        pool,
        client_id,
        _event(EventKind.BOUNCED, "email.bounced", "re_b", communication_id=bounced,
               reason="no such user"),
        _event(EventKind.DELIVERED, "email.delivered", "re_d", communication_id=delivered),
    )  # fmt: skip

    await _record(
        pool,
        Ack(bounced, 1, NextStep.FAILED, 0, error_message="gave up after 1 attempt"),
        Ack(delivered, 1, NextStep.REJECTED, 0, compliance_notes="not sent: consent withdrawn"),
    )

    b, d = await _comm(pool, bounced), await _comm(pool, delivered)
    assert (b["status"], d["status"]) == ("bounced", "delivered")
    assert "no such user" in b["error_message"]


# ---------------------------------------------------------------------------- effects


async def test_hard_bounce_bounces_and_suppresses_the_address(pool: AsyncConnectionPool) -> None:
    client_id = await _client(pool)
    lead_id = await _lead(pool, client_id, "kim@buyer.example")
    message_id = _message_id()
    comm_id = await _communication(
        pool, client_id, lead_id, "Kim@Buyer.example", status="sent",
        provider="resend", external_id=message_id,
    )  # fmt: skip

    await _ingest(
        pool,
        client_id,
        _event(EventKind.BOUNCED, "email.bounced", message_id, reason="550 5.1.1 user unknown"),
    )

    comm = await _comm(pool, comm_id)
    assert comm["status"] == "bounced"
    assert "550 5.1.1 user unknown" in comm["error_message"]
    assert await _suppressions(pool, client_id) == [("email", "kim@buyer.example", "bounce")]
    assert await _consent(pool, lead_id) == "granted"


async def test_complaint_keeps_delivered_suppresses_and_withdraws_consent(
    pool: AsyncConnectionPool,
) -> None:
    client_id = await _client(pool)
    lead_id = await _lead(pool, client_id, "Lou@Buyer.example")
    message_id = _message_id()
    comm_id = await _communication(
        pool, client_id, lead_id, "lou@buyer.example", status="delivered",
        provider="resend", external_id=message_id,
    )  # fmt: skip

    await _ingest(pool, client_id, _event(EventKind.COMPLAINED, "email.complained", message_id))

    assert (await _comm(pool, comm_id))["status"] == "delivered"
    assert await _suppressions(pool, client_id) == [("email", "lou@buyer.example", "complaint")]
    assert await _consent(pool, lead_id) == "withdrawn"
    [entry] = await _history(pool, client_id)
    assert (entry["lead_id"], entry["channel"], entry["recipient"]) == (
        lead_id, "email", "lou@buyer.example",
    )  # fmt: skip
    assert (entry["consent_status"], entry["communication_id"]) == ("withdrawn", comm_id)
    assert "complaint" in entry["source"]


async def test_a_provider_suppressed_address_is_rejected_with_a_compliance_note(
    pool: AsyncConnectionPool,
) -> None:
    client_id = await _client(pool)
    lead_id = await _lead(pool, client_id, "max@buyer.example")
    message_id = _message_id()
    comm_id = await _communication(
        pool, client_id, lead_id, "max@buyer.example", status="sent",
        provider="resend", external_id=message_id,
    )  # fmt: skip

    await _ingest(pool, client_id, _event(EventKind.DROPPED, "email.suppressed", message_id))

    comm = await _comm(pool, comm_id)
    assert comm["status"] == "rejected"
    assert comm["compliance_notes"].startswith("resend email.suppressed:")


async def test_a_providers_refusal_keeps_the_consent_entry_the_send_relied_on(
    pool: AsyncConnectionPool,
) -> None:
    client_id = await _client(pool)
    lead_id = await _lead(pool, client_id, "may@buyer.example")
    message_id = _message_id()
    comm_id = await _communication(
        pool, client_id, lead_id, "may@buyer.example", status="sent",
        provider="resend", external_id=message_id,
    )  # fmt: skip
    relied = "consent: history #41 (granted via api key lqs_k1, 2026-12-01 10:00 UTC)"
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE public.communications SET compliance_notes = %s WHERE id = %s",
            (relied, comm_id),
        )

    await _ingest(pool, client_id, _event(EventKind.DROPPED, "email.suppressed", message_id))

    comm = await _comm(pool, comm_id)
    assert comm["status"] == "rejected"
    assert comm["compliance_notes"].startswith(relied + "; resend email.suppressed:")


async def test_twilio_undelivered_fails_with_the_error_code(pool: AsyncConnectionPool) -> None:
    client_id = await _client(pool)
    lead_id = await _lead(pool, client_id, "ned@buyer.example", phone="+12015550123")
    sid = "SM" + uuid.uuid4().hex
    comm_id = await _communication(
        pool, client_id, lead_id, "+12015550123", channel="sms", status="sent",
        provider="twilio", external_id=sid,
    )  # fmt: skip

    await _ingest(
        pool,
        client_id,
        _event(EventKind.FAILED, "undelivered", sid, provider="twilio", occurred_at=None,
               event_id=f"{sid}:undelivered", reason="undelivered (ErrorCode 30003)",
               error_code="30003"),
        provider="twilio",
    )  # fmt: skip

    comm = await _comm(pool, comm_id)
    assert comm["status"] == "failed"
    assert "30003" in comm["error_message"]


# ---------------------------------------------------------------------------- the dispatcher


class ScriptedResend:
    """Stands in for Resend: records each message and answers as ``answer`` says."""

    name = "resend"
    channel = "email"

    def __init__(self) -> None:
        self.calls: list[OutboundMessage] = []
        self.answer: Callable[[OutboundMessage, int], SendResult] = _accept

    async def send(self, settings: Any, message: OutboundMessage) -> SendResult:
        self.calls.append(message)
        return self.answer(message, len(self.calls))

    def sent(self, comm_id: UUID) -> list[OutboundMessage]:
        return [m for m in self.calls if m.communication_id == comm_id]


def _accept(message: OutboundMessage, n: int) -> SendResult:
    external_id = f"re-{message.communication_id}"
    return SendResult(Verdict.ACCEPTED, 200, external_id=external_id, response={"id": external_id})


LINKS = UnsubscribeLinks(
    "fake-unsubscribe-secret-for-tests-0123456789", "https://lqs.example/", timedelta(days=60)
)


@pytest.fixture(scope="module")
async def resend() -> ScriptedResend:
    return ScriptedResend()


@pytest.fixture(scope="module")
async def dispatcher(
    pool: AsyncConnectionPool, resend: ScriptedResend
) -> AsyncIterator[Dispatcher]:
    """One dispatcher for the module (building its HTTP clients takes a while)."""
    made = Dispatcher(
        pool,
        DispatcherOptions(batches=False, policy=FAST, unsubscribe=LINKS),
        owner=f"events-{uuid.uuid4().hex[:8]}",
        providers={"resend": resend},
    )
    async with made:
        yield made


@pytest.fixture(autouse=True)
def _fresh_script(resend: ScriptedResend) -> None:
    resend.answer = _accept


async def test_a_later_message_to_a_bounced_address_is_rejected_at_send_time(
    pool: AsyncConnectionPool, dispatcher: Dispatcher, resend: ScriptedResend
) -> None:
    client_id = await _client(pool)
    lead_id = await _lead(pool, client_id, "oz@buyer.example")
    message_id = _message_id()
    await _communication(
        pool, client_id, lead_id, "oz@buyer.example", status="sent",
        provider="resend", external_id=message_id,
    )  # fmt: skip
    await _ingest(pool, client_id, _event(EventKind.BOUNCED, "email.bounced", message_id))
    later = await _communication(pool, client_id, lead_id, " OZ@Buyer.example", queued=True)

    await dispatcher.drain()

    comm = await _comm(pool, later)
    assert comm["status"] == "rejected"
    assert "suppression list" in comm["compliance_notes"]
    assert resend.sent(later) == []


async def test_a_message_settled_by_an_event_while_queued_is_not_sent_again(
    pool: AsyncConnectionPool, dispatcher: Dispatcher, resend: ScriptedResend
) -> None:
    client_id = await _client(pool)
    lead_id = await _lead(pool, client_id, "pia@buyer.example")
    # A first attempt timed out, though the provider had taken the message; a retry is due.
    comm_id = await _communication(
        pool, client_id, lead_id, "pia@buyer.example", queued=True, retry_count=1
    )
    await _ingest(
        pool,
        client_id,
        _event(EventKind.DELIVERED, "email.delivered", "re_x", communication_id=comm_id),
    )

    stats = await dispatcher.drain()

    assert stats.settled == 1
    assert resend.sent(comm_id) == []
    comm = await _comm(pool, comm_id)
    assert (comm["status"], comm["delivered_at"]) == ("delivered", WHEN)
    for table in ("delivery_queue", "delivery_attempts"):
        sql = f"SELECT 1 FROM public.{table} WHERE communication_id = %s"
        assert await _rows(pool, sql, comm_id) == [], table


async def test_emails_to_leads_carry_identical_one_click_unsubscribe_headers_on_every_attempt(
    pool: AsyncConnectionPool, dispatcher: Dispatcher, resend: ScriptedResend
) -> None:
    client_id = await _client(pool)
    lead_id = await _lead(pool, client_id, "quinn@buyer.example")
    comm_id = await _communication(pool, client_id, lead_id, "quinn@buyer.example", queued=True)

    def busy_once(message: OutboundMessage, n: int) -> SendResult:
        if len(resend.sent(message.communication_id)) == 1:
            return SendResult(Verdict.TRANSIENT, 503, error_code="503", error_message="busy")
        return _accept(message, n)

    resend.answer = busy_once
    await dispatcher.drain(settle=2.0)

    first, second = resend.sent(comm_id)
    assert dict(first.headers) == dict(second.headers)
    unsubscribe = first.headers["List-Unsubscribe"]
    assert first.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = re.fullmatch(r"<https://lqs\.example/u/([^/>]+)>", unsubscribe)
    assert link is not None, unsubscribe
    token = link.group(1)
    named = LINKS.read(token)
    assert (named.client_id, named.lead_id, named.communication_id) == (client_id, lead_id, comm_id)
    assert (named.channel, named.recipient) == ("email", "quinn@buyer.example")
    assert (await _comm(pool, comm_id))["status"] == "sent"


async def test_emails_not_addressed_to_the_lead_carry_no_unsubscribe_headers(
    pool: AsyncConnectionPool, dispatcher: Dispatcher, resend: ScriptedResend
) -> None:
    client_id = await _client(pool)
    lead_id = await _lead(pool, client_id, "rae@buyer.example")
    comm_id = await _communication(pool, client_id, lead_id, "sales@seller.example", queued=True)
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE public.delivery_queue SET to_lead = false WHERE communication_id = %s",
            (comm_id,),
        )

    await dispatcher.drain()

    [message] = resend.sent(comm_id)
    assert "List-Unsubscribe" not in message.headers


# ---------------------------------------------------------------------------- the timeline


async def test_the_timeline_lists_creation_attempts_and_events_in_time_order(
    pool: AsyncConnectionPool,
) -> None:
    client_id = await _client(pool)
    lead_id = await _lead(pool, client_id, "sam@buyer.example")
    comm_id = await _communication(pool, client_id, lead_id, "sam@buyer.example", leased=True)
    created = (await _comm(pool, comm_id))["created_at"]
    message_id = _message_id()
    started = created + timedelta(seconds=1)
    attempt = Attempt("resend", started, started + timedelta(milliseconds=40), 200, None, None,
                      "accepted")  # fmt: skip
    await _record(pool, _sent_ack(comm_id, client_id, message_id, attempt=attempt))
    # Received out of order: the provider's times put them back in order.
    await _ingest(
        pool,
        client_id,
        _event(EventKind.DELIVERED, "email.delivered", message_id,
               occurred_at=created + timedelta(seconds=3)),
        _event(EventKind.ACCEPTED, "email.sent", message_id,
               occurred_at=created + timedelta(seconds=2)),
    )  # fmt: skip

    async with pool.connection() as conn:
        found = await communication_timeline(conn, comm_id)
        missing = await communication_timeline(conn, uuid.uuid4())

    assert missing is None
    assert found is not None
    row, entries = found
    assert (row["id"], row["status"]) == (comm_id, "delivered")
    assert [e.kind for e in entries] == ["created", "attempt", "event", "event"]
    assert [e.at for e in entries] == sorted(e.at for e in entries)
    assert entries[1].summary.startswith("attempt 1 via resend: accepted (HTTP 200)")
    assert "email.sent → no change" in entries[2].summary
    assert "email.delivered → delivered" in entries[3].summary
