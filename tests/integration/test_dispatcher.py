"""The dispatcher against a real database, with scripted providers standing in for the
network: leases, retries, attempts, failover and the consent check before sending.

The providers' wire formats and the fault scenarios against the simulator are tested in
tests/e2e/test_sending.py; here each provider answer is scripted so that every database
transition can be checked exactly.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from lqs.db.clients import create_client
from lqs.db.communications import redrive_failed
from lqs.db.dispatch import Ack, claim_due, record_acks
from lqs.db.leads import insert_or_merge_leads
from lqs.domain.delivery import NextStep, RetryPolicy, Verdict
from lqs.domain.leads import parse_lead
from lqs.providers.base import OutboundMessage, SendResult
from lqs.worker.dispatcher import Dispatcher, DispatcherOptions
from lqs.worker.processor import LeadProcessor

FAST = RetryPolicy(base_delay=0.001, max_delay=0.01, horizon=3600)

DELIVERY = {
    "email": {"primary": "resend", "secondary": "sendgrid", "failover_after": 2},
    "resend": {"api_key": "re_fake_key", "from_address": "lqs@sender.example",
               "base_url": "http://127.0.0.1:9"},
    "sendgrid": {"api_key": "SG.fake", "from_address": "lqs@sender.example",
                 "base_url": "http://127.0.0.1:9"},
}  # fmt: skip

LEAD = {"email": "ceo@bigco.example", "job_title": "CEO", "company_size": 500,
        "company_domain": "bigco.example", "consent_status": "granted", "first_name": "Ada"}  # fmt: skip


class Scripted:
    """A provider whose answers come from ``answer(message, call_number)``."""

    def __init__(
        self, name: str, answer: Callable[[OutboundMessage, int], SendResult] | None = None
    ) -> None:
        self.name = name
        self.channel = "email"
        self.calls: list[OutboundMessage] = []
        self._answer = answer or (lambda m, n: accepted(f"{name}-{m.communication_id}"))

    async def send(self, settings: Any, message: OutboundMessage) -> SendResult:
        self.calls.append(message)
        return self._answer(message, len(self.calls))


def accepted(external_id: str) -> SendResult:
    return SendResult(Verdict.ACCEPTED, 200, external_id=external_id, response={"id": external_id})


def transient(retry_after: float | None = None) -> SendResult:
    return SendResult(
        Verdict.TRANSIENT, 500, error_code="application_error",
        error_message="resend 500 application_error: boom", retry_after=retry_after,
    )  # fmt: skip


def permanent() -> SendResult:
    return SendResult(
        Verdict.PERMANENT, 422, error_code="validation_error",
        error_message="resend 422 validation_error: Invalid `to` field",
    )  # fmt: skip


@pytest.fixture
async def pool(migrated_db: str) -> AsyncIterator[AsyncConnectionPool]:
    from lqs.db.pool import open_pool

    opened = await open_pool(migrated_db, min_size=1, max_size=6, worker=True)
    yield opened
    await opened.close()


async def _pending(
    pool: AsyncConnectionPool, n: int = 1, **settings: Any
) -> tuple[UUID, list[UUID]]:
    """A client whose ``n`` qualified leads each produced one pending notification."""
    slug = f"d-{uuid.uuid4().hex[:10]}"
    client_settings = {"notification_email": f"sales@{slug}.example", "delivery": DELIVERY}
    client_settings.update(settings)
    async with pool.connection() as conn:
        client = await create_client(conn, slug, slug, client_settings)
        await insert_or_merge_leads(
            conn,
            client.id,
            [parse_lead({**LEAD, "email": f"ceo{i}@{slug}.example"}) for i in range(n)],
        )
    await LeadProcessor(pool, batch_size=1000, in_flight=1, park_after=3).drain()
    comms = await _rows(
        pool, "SELECT id FROM public.communications WHERE client_id = %s", client.id
    )
    return client.id, [c["id"] for c in comms]


async def _rows(pool: AsyncConnectionPool, sql: str, *params: Any) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(sql.encode(), params)
        return await cur.fetchall()


async def _comm(pool: AsyncConnectionPool, comm_id: UUID) -> dict[str, Any]:
    [row] = await _rows(pool, "SELECT * FROM public.communications WHERE id = %s", comm_id)
    return row


async def _attempts(pool: AsyncConnectionPool, comm_id: UUID) -> list[dict[str, Any]]:
    return await _rows(
        pool,
        "SELECT * FROM public.delivery_attempts WHERE communication_id = %s ORDER BY attempt",
        comm_id,
    )


async def _queued(pool: AsyncConnectionPool, comm_id: UUID) -> dict[str, Any] | None:
    rows = await _rows(
        pool, "SELECT * FROM public.delivery_queue WHERE communication_id = %s", comm_id
    )
    return rows[0] if rows else None


def _dispatcher(pool: AsyncConnectionPool, **providers: Scripted) -> Dispatcher:
    return Dispatcher(
        pool,
        DispatcherOptions(batches=False, policy=FAST, concurrency=8, batch_size=10),
        providers={"resend": providers.get("resend", Scripted("resend")),
                   "sendgrid": providers.get("sendgrid", Scripted("sendgrid"))},
    )  # fmt: skip


async def test_accepted_message_is_sent_with_the_providers_id_and_one_attempt(
    pool: AsyncConnectionPool,
) -> None:
    _, [comm_id] = await _pending(pool)
    resend = Scripted("resend")

    async with _dispatcher(pool, resend=resend) as dispatcher:
        stats = await dispatcher.drain()

    assert stats.sent >= 1
    comm = await _comm(pool, comm_id)
    assert comm["status"] == "sent"
    assert comm["provider"] == "resend"
    assert comm["external_id"] == f"resend-{comm_id}"
    assert comm["external_reference"] == {"id": f"resend-{comm_id}"}
    assert comm["sent_at"] is not None
    assert comm["retry_count"] == 0
    assert comm["error_message"] is None
    assert await _queued(pool, comm_id) is None
    [attempt] = await _attempts(pool, comm_id)
    assert (attempt["attempt"], attempt["provider"], attempt["outcome"], attempt["recorded"]) == (
        1, "resend", "accepted", True,
    )  # fmt: skip
    assert attempt["http_status"] == 200
    [message] = [m for m in resend.calls if m.communication_id == comm_id]
    assert message.recipient.startswith("sales@")
    assert message.subject
    assert message.content


async def test_transient_failures_retry_with_the_same_id_then_send(
    pool: AsyncConnectionPool,
) -> None:
    _, [comm_id] = await _pending(pool, delivery={**DELIVERY, "email": {"primary": "resend"}})
    resend = Scripted("resend", lambda m, n: transient() if n <= 2 else accepted("ok"))

    async with _dispatcher(pool, resend=resend) as dispatcher:
        await dispatcher.drain(settle=2.0)

    comm = await _comm(pool, comm_id)
    assert (comm["status"], comm["retry_count"]) == ("sent", 2)
    assert [m.communication_id for m in resend.calls] == [comm_id] * 3
    attempts = await _attempts(pool, comm_id)
    assert [a["outcome"] for a in attempts] == ["transient", "transient", "accepted"]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]


async def test_transient_failures_stop_at_max_retries_with_an_exact_count(
    pool: AsyncConnectionPool,
) -> None:
    _, [comm_id] = await _pending(pool)
    resend = Scripted("resend", lambda m, n: transient())
    dispatcher = Dispatcher(
        pool,
        DispatcherOptions(batches=False, policy=FAST),
        providers={"resend": resend, "sendgrid": resend},
    )
    # No failover here: both "providers" fail the same way.
    async with dispatcher:
        await dispatcher.drain(settle=2.0)

    comm = await _comm(pool, comm_id)
    assert comm["status"] == "failed"
    assert comm["retry_count"] == comm["max_retries"] == 3
    assert comm["error_message"].startswith("gave up after 4 attempts: resend 500")
    assert len(await _attempts(pool, comm_id)) == 4
    assert await _queued(pool, comm_id) is None


async def test_permanent_failure_fails_at_once_with_the_providers_message(
    pool: AsyncConnectionPool,
) -> None:
    _, [comm_id] = await _pending(pool)

    async with _dispatcher(pool, resend=Scripted("resend", lambda m, n: permanent())) as d:
        await d.drain(settle=2.0)

    comm = await _comm(pool, comm_id)
    assert (comm["status"], comm["retry_count"]) == ("failed", 0)
    assert comm["error_message"] == "resend 422 validation_error: Invalid `to` field"
    [attempt] = await _attempts(pool, comm_id)
    assert (attempt["outcome"], attempt["http_status"]) == ("permanent", 422)


async def test_retry_after_is_honoured(pool: AsyncConnectionPool) -> None:
    _, [comm_id] = await _pending(pool)
    before = datetime.now(UTC)

    async with _dispatcher(pool, resend=Scripted("resend", lambda m, n: transient(30))) as d:
        await d.drain()

    queued = await _queued(pool, comm_id)
    assert queued is not None
    assert (queued["next_attempt_at"] - before).total_seconds() >= 30
    assert queued["lease_owner"] is None
    assert queued["last_error"].startswith("resend 500")
    comm = await _comm(pool, comm_id)
    assert (comm["status"], comm["retry_count"]) == ("pending", 1)


async def test_email_fails_over_to_the_secondary_after_consecutive_transient_failures(
    pool: AsyncConnectionPool,
) -> None:
    _, comm_ids = await _pending(pool, n=6)
    resend = Scripted("resend", lambda m, n: transient())
    sendgrid = Scripted("sendgrid")
    dispatcher = Dispatcher(
        pool,
        DispatcherOptions(batches=False, policy=FAST, concurrency=1, batch_size=1),
        providers={"resend": resend, "sendgrid": sendgrid},
    )

    async with dispatcher:
        await dispatcher.drain(settle=2.0)

    assert len(resend.calls) == 2  # failover_after: 2, then everything goes to SendGrid
    rows = await _rows(
        pool, "SELECT status, provider FROM public.communications WHERE id = ANY(%s)", comm_ids
    )
    assert {(r["status"], r["provider"]) for r in rows} == {("sent", "sendgrid")}
    providers = await _rows(
        pool,
        "SELECT provider, outcome FROM public.delivery_attempts WHERE communication_id = ANY(%s)",
        comm_ids,
    )
    assert sorted((p["provider"], p["outcome"]) for p in providers) == sorted(
        [("resend", "transient")] * 2 + [("sendgrid", "accepted")] * 6
    )


async def test_consent_withdrawn_after_creation_is_rejected_without_sending(
    pool: AsyncConnectionPool,
) -> None:
    rules = [{"channel": "email", "to": "lead", "template": "lead_acknowledgement"}]
    client_id, comm_ids = await _pending(
        pool, notifications={"qualified": rules, "nurture": rules, "disqualified": []}
    )
    [comm_id] = comm_ids
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE public.leads SET consent_status = 'withdrawn' WHERE client_id = %s",
            (client_id,),
        )
    resend = Scripted("resend")

    async with _dispatcher(pool, resend=resend) as dispatcher:
        await dispatcher.drain()

    comm = await _comm(pool, comm_id)
    assert comm["status"] == "rejected"
    assert "consent is now withdrawn" in comm["compliance_notes"]
    assert resend.calls == []
    assert await _attempts(pool, comm_id) == []
    assert await _queued(pool, comm_id) is None


async def test_recipient_suppressed_after_creation_is_rejected_without_sending(
    pool: AsyncConnectionPool,
) -> None:
    client_id, [comm_id] = await _pending(pool)
    comm = await _comm(pool, comm_id)
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO public.suppressions (client_id, channel, recipient, reason)"
            " VALUES (%s, 'email', %s, 'complaint')",
            (client_id, comm["recipient"].lower()),
        )
    resend = Scripted("resend")

    async with _dispatcher(pool, resend=resend) as dispatcher:
        await dispatcher.drain()

    comm = await _comm(pool, comm_id)
    assert comm["status"] == "rejected"
    assert "suppression list" in comm["compliance_notes"]
    assert resend.calls == []


async def test_a_client_without_an_sms_provider_fails_its_sms_with_a_clear_message(
    pool: AsyncConnectionPool,
) -> None:
    rules = [{"channel": "sms", "to": "client", "template": "lead_qualified_sms"}]
    _, [comm_id] = await _pending(
        pool,
        notification_phone="+12015550123",
        notifications={"qualified": rules, "nurture": rules, "disqualified": rules},
    )

    async with _dispatcher(pool) as dispatcher:
        await dispatcher.drain()

    comm = await _comm(pool, comm_id)
    assert (comm["status"], comm["error_message"]) == (
        "failed", "no provider is configured for sms",
    )  # fmt: skip


async def test_invalid_stored_delivery_settings_fail_with_the_bad_key(
    pool: AsyncConnectionPool,
) -> None:
    _, [comm_id] = await _pending(pool, delivery={"resend": {"api_key": "re_x"}})

    async with _dispatcher(pool) as dispatcher:
        await dispatcher.drain()

    comm = await _comm(pool, comm_id)
    assert comm["status"] == "failed"
    assert "delivery.resend.from_address" in comm["error_message"]


async def test_an_expired_lease_cannot_overwrite_a_newer_attempt(
    pool: AsyncConnectionPool,
) -> None:
    _, [comm_id] = await _pending(pool)
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE public.delivery_queue SET priority = 1 WHERE communication_id = %s", (comm_id,)
        )
        [old] = [
            m
            for m in await claim_due(conn, "old-worker", 1000, 0.05)
            if m.communication_id == comm_id
        ]
    await asyncio.sleep(0.1)  # the lease expires; another worker claims attempt 2
    async with pool.connection() as conn:
        [new] = [
            m
            for m in await claim_due(conn, "new-worker", 1000, 60)
            if m.communication_id == comm_id
        ]
        assert (old.attempt, new.attempt) == (1, 2)
        late = await record_acks(
            conn,
            "old-worker",
            [Ack(comm_id, old.attempt, NextStep.FAILED, 0, error_message="late")],
        )
        fresh = await record_acks(
            conn, "new-worker", [Ack(comm_id, new.attempt, NextStep.SENT, 0, provider="resend",
                                     external_id="re-2", sent_at=datetime.now(UTC))]
        )  # fmt: skip

    assert (late, fresh) == (set(), {comm_id})
    comm = await _comm(pool, comm_id)
    assert (comm["status"], comm["external_id"]) == ("sent", "re-2")


async def test_a_delivery_recorded_before_our_sent_is_not_downgraded(
    pool: AsyncConnectionPool,
) -> None:
    _, [comm_id] = await _pending(pool)
    delivered_at = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)

    def deliver_first(message: OutboundMessage, n: int) -> SendResult:
        # A webhook says "delivered" between the provider's answer and our record.
        import psycopg

        with psycopg.connect(pool.conninfo) as conn:
            conn.execute(
                "UPDATE public.communications SET status = 'delivered', delivered_at = %s"
                " WHERE id = %s",
                (delivered_at, message.communication_id),
            )
        return accepted("re-1")

    async with _dispatcher(pool, resend=Scripted("resend", deliver_first)) as dispatcher:
        await dispatcher.drain()

    comm = await _comm(pool, comm_id)
    assert (comm["status"], comm["delivered_at"]) == ("delivered", delivered_at)
    assert comm["sent_at"] is not None
    assert comm["external_id"] == "re-1"


async def test_higher_priority_communications_are_claimed_first(
    pool: AsyncConnectionPool,
) -> None:
    _, comm_ids = await _pending(pool, n=3)
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE public.delivery_queue SET priority = 10 WHERE communication_id = ANY(%s)",
            (comm_ids,),
        )
        await conn.execute(
            "UPDATE public.delivery_queue SET priority = 1 WHERE communication_id = %s",
            (comm_ids[2],),
        )
        claimed = await claim_due(conn, "w", 1000, 60)
    mine = [m.communication_id for m in claimed if m.communication_id in comm_ids]
    assert mine[0] == comm_ids[2]


async def test_failed_communications_can_be_redriven_and_keep_their_attempt_numbers(
    pool: AsyncConnectionPool,
) -> None:
    _, [comm_id] = await _pending(pool)
    async with _dispatcher(pool, resend=Scripted("resend", lambda m, n: permanent())) as d:
        await d.drain()
    assert (await _comm(pool, comm_id))["status"] == "failed"

    async with pool.connection() as conn, conn.transaction():
        assert await redrive_failed(conn, [comm_id], None) == [comm_id]
    comm = await _comm(pool, comm_id)
    assert (comm["status"], comm["retry_count"], comm["error_message"]) == ("pending", 0, None)

    async with _dispatcher(pool) as dispatcher:
        await dispatcher.drain()
    comm = await _comm(pool, comm_id)
    assert comm["status"] == "sent"
    assert [a["attempt"] for a in await _attempts(pool, comm_id)] == [1, 2]


async def test_redrive_leaves_communications_that_did_not_fail_alone(
    pool: AsyncConnectionPool,
) -> None:
    _, [comm_id] = await _pending(pool)
    async with pool.connection() as conn, conn.transaction():
        assert await redrive_failed(conn, [comm_id], None) == []
    assert (await _comm(pool, comm_id))["status"] == "pending"


async def test_settings_a_provider_cannot_use_fail_the_message_with_its_reason(
    pool: AsyncConnectionPool,
) -> None:
    from lqs.providers.base import ProviderConfigError

    _, [comm_id] = await _pending(pool)

    def unusable(message: OutboundMessage, n: int) -> SendResult:
        raise ProviderConfigError("resend.api_key: expected the API key (re_…)")

    async with _dispatcher(pool, resend=Scripted("resend", unusable)) as dispatcher:
        await dispatcher.drain()

    comm = await _comm(pool, comm_id)
    assert (comm["status"], comm["error_message"]) == (
        "failed", "resend: resend.api_key: expected the API key (re_…)",
    )  # fmt: skip


async def test_a_failed_ack_write_is_kept_and_written_by_the_next_flush(
    pool: AsyncConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lqs.worker.dispatcher as dispatcher_module

    _, [comm_id] = await _pending(pool)
    real = dispatcher_module.record_acks
    calls = 0

    async def flaky(*args: Any, **kwargs: Any) -> set[UUID]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("the database went away for a moment")
        return await real(*args, **kwargs)

    monkeypatch.setattr(dispatcher_module, "record_acks", flaky)
    async with _dispatcher(pool) as dispatcher:
        await dispatcher.drain()

    assert calls >= 2
    assert (await _comm(pool, comm_id))["status"] == "sent"
