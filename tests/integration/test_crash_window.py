"""The window between a provider's acceptance and our record of it (the worker dies).

For providers without idempotency keys the attempt is recorded as started before the
request; the delivery event, matched by our own id, settles the row with the provider's
message id; the retry then sends nothing; and a consent change after a possibly accepted
attempt never claims that nothing was sent.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from lqs.db.clients import create_client
from lqs.db.communications import communication_timeline
from lqs.db.leads import insert_or_merge_leads
from lqs.domain.events import DeliveryEvent, EventKind
from lqs.domain.leads import parse_lead
from lqs.providers.base import OutboundMessage, SendResult
from lqs.providers.twilio import TwilioProvider, callback_url, communication_id_in_query
from lqs.providers.twilio import parse_webhook as parse_twilio
from lqs.worker.dispatcher import Dispatcher, DispatcherOptions
from lqs.worker.processor import LeadProcessor
from tests.integration.test_dispatcher import (
    DELIVERY,
    FAST,
    LEAD,
    Scripted,
    _attempts,
    _comm,
    _pending,
    _queued,
    _rows,
)
from tests.pending_events import ingest

SENDGRID_FIRST = {**DELIVERY, "email": {"primary": "sendgrid"}}
TWILIO = {"account_sid": "AC" + "0" * 32, "auth_token": "fake_token",
          "from_number": "+12015550100", "base_url": "http://127.0.0.1:9",
          "status_callback_url": "https://lqs.example/webhooks/twilio/x?tag=1"}  # fmt: skip
SMS_TO_LEAD = {"qualified": [{"channel": "sms", "to": "lead", "template": "lead_qualified_sms"}]}


class Hanging(Scripted):
    """A provider that accepts the request and never answers: the worker dies waiting."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.reached = asyncio.Event()

    async def send(self, settings: Any, message: OutboundMessage) -> SendResult:
        self.calls.append(message)
        self.reached.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def _options() -> DispatcherOptions:
    return DispatcherOptions(batches=False, policy=FAST, lease_seconds=0.3, batch_size=10)


async def _die_after_the_provider_accepted(
    pool: AsyncConnectionPool, name: str, comm_id: UUID
) -> None:
    """Run a dispatcher until its provider has the request, then kill it (cancel)."""
    provider = Hanging(name)
    async with Dispatcher(pool, _options(), providers={name: provider}) as dispatcher:
        draining = asyncio.create_task(dispatcher.drain())
        await asyncio.wait_for(provider.reached.wait(), timeout=10)
        draining.cancel()
        with pytest.raises(asyncio.CancelledError):
            await draining
    assert [m.communication_id for m in provider.calls] == [comm_id]


async def _retry_after_the_lease(pool: AsyncConnectionPool, name: str) -> Scripted:
    await asyncio.sleep(0.4)
    provider = Scripted(name)
    async with Dispatcher(pool, _options(), providers={name: provider}) as dispatcher:
        await dispatcher.drain()
    return provider


async def test_a_sendgrid_event_settles_an_unrecorded_send_and_the_retry_sends_nothing(
    pool: AsyncConnectionPool,
) -> None:
    client_id, [comm_id] = await _pending(pool, delivery=SENDGRID_FIRST)
    await _die_after_the_provider_accepted(pool, "sendgrid", comm_id)

    [attempt] = await _attempts(pool, comm_id)
    assert (attempt["attempt"], attempt["provider"], attempt["outcome"]) == (
        1,
        "sendgrid",
        "started",
    )
    assert attempt["finished_at"] is None
    assert (await _comm(pool, comm_id))["status"] == "pending"

    # SendGrid's event carries our id (custom_args) and its own message id.
    delivered = DeliveryEvent(
        provider="sendgrid", event_id="sg-ev-1", kind=EventKind.DELIVERED, raw_type="delivered",
        external_id="sg-msg-1", communication_id=comm_id, payload={"event": "delivered"},
    )  # fmt: skip
    await ingest(pool, client_id, "sendgrid", [delivered])

    comm = await _comm(pool, comm_id)
    assert (comm["status"], comm["external_id"], comm["provider"]) == (
        "delivered", "sg-msg-1", "sendgrid",
    )  # fmt: skip
    assert comm["sent_at"] is not None

    retry = await _retry_after_the_lease(pool, "sendgrid")
    assert retry.calls == []  # settled: not sent twice
    assert await _queued(pool, comm_id) is None
    comm = await _comm(pool, comm_id)
    assert (comm["status"], comm["external_id"]) == ("delivered", "sg-msg-1")
    async with pool.connection() as conn:
        timeline = await communication_timeline(conn, comm_id)
    assert timeline is not None
    summaries = [entry.summary for entry in timeline[1]]
    assert "attempt 1 via sendgrid: started, no answer recorded" in summaries[1]
    assert summaries[2].startswith("sendgrid delivered → delivered")


async def test_an_acknowledged_attempt_replaces_its_started_record(
    pool: AsyncConnectionPool,
) -> None:
    _, [comm_id] = await _pending(pool, delivery=SENDGRID_FIRST)
    sendgrid = Scripted("sendgrid")
    async with Dispatcher(pool, _options(), providers={"sendgrid": sendgrid}) as dispatcher:
        await dispatcher.drain()
    [attempt] = await _attempts(pool, comm_id)
    assert (attempt["outcome"], attempt["recorded"], attempt["http_status"]) == (
        "accepted", True, 200,
    )  # fmt: skip
    assert attempt["finished_at"] is not None


async def test_resend_attempts_are_not_recorded_as_started(pool: AsyncConnectionPool) -> None:
    # Resend deduplicates on the idempotency key: no record before the request is needed.
    _, [comm_id] = await _pending(pool, delivery={**DELIVERY, "email": {"primary": "resend"}})
    await _die_after_the_provider_accepted(pool, "resend", comm_id)
    assert await _attempts(pool, comm_id) == []
    retry = await _retry_after_the_lease(pool, "resend")
    assert [m.communication_id for m in retry.calls] == [comm_id]  # same key: Resend dedups


async def _sms_to_lead(pool: AsyncConnectionPool) -> tuple[UUID, UUID]:
    """A client whose one qualified lead (with a phone) has one pending SMS to the lead."""
    slug = f"sms-{uuid.uuid4().hex[:10]}"
    settings = {"delivery": {**DELIVERY, "twilio": TWILIO}, "notifications": SMS_TO_LEAD}
    async with pool.connection() as conn:
        client = await create_client(conn, slug, slug, settings)
        await insert_or_merge_leads(
            conn, client.id, [parse_lead({**LEAD, "phone": "+12015550123"})]
        )
    await LeadProcessor(pool, batch_size=1000, in_flight=1, park_after=3).drain()
    [row] = await _rows(
        pool, "SELECT id FROM public.communications WHERE client_id = %s", client.id
    )
    return client.id, row["id"]


async def test_a_consent_withdrawn_after_a_possibly_accepted_sms_is_not_called_not_sent(
    pool: AsyncConnectionPool,
) -> None:
    _, comm_id = await _sms_to_lead(pool)
    await _die_after_the_provider_accepted(pool, "twilio", comm_id)
    await _withdraw_consent(pool, comm_id)

    retry = await _retry_after_the_lease(pool, "twilio")

    assert retry.calls == []
    comm = await _comm(pool, comm_id)
    assert comm["status"] == "rejected"
    assert comm["compliance_notes"].startswith("not sent again:")
    assert "attempt 1 was started but its answer was never recorded" in comm["compliance_notes"]


async def test_a_twilio_callback_for_an_unrecorded_sms_settles_it_before_a_consent_change(
    pool: AsyncConnectionPool,
) -> None:
    client_id, comm_id = await _sms_to_lead(pool)
    await _die_after_the_provider_accepted(pool, "twilio", comm_id)
    # The status callback URL carried our id; Twilio's signature covers it.
    url = callback_url(TWILIO["status_callback_url"], comm_id)
    query = dict(part.split("=", 1) for part in url.split("?", 1)[1].split("&"))
    [delivered] = parse_twilio(
        {"MessageSid": "SM" + "1" * 32, "MessageStatus": "delivered", "To": "+12015550123"},
        communication_id_in_query(query),
    )
    await ingest(pool, client_id, "twilio", [delivered])
    await _withdraw_consent(pool, comm_id)

    retry = await _retry_after_the_lease(pool, "twilio")

    assert retry.calls == []
    comm = await _comm(pool, comm_id)
    assert (comm["status"], comm["external_id"], comm["provider"]) == (
        "delivered", "SM" + "1" * 32, "twilio",
    )  # fmt: skip
    assert comm["compliance_notes"] is None


async def _withdraw_consent(pool: AsyncConnectionPool, comm_id: UUID) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE public.leads SET consent_status = 'withdrawn'"
            " WHERE id = (SELECT lead_id FROM public.communications WHERE id = %s)",
            (comm_id,),
        )


def test_the_status_callback_url_carries_the_communication_id() -> None:
    comm_id = UUID("0b1c7f0e-3a43-4d4e-9f62-0f7c1d2e3a4b")
    url = callback_url("https://lqs.example/webhooks/twilio/c?tag=1&lqs_id=forged", comm_id)
    assert url == f"https://lqs.example/webhooks/twilio/c?tag=1&lqs_id={comm_id}"
    assert communication_id_in_query({"lqs_id": str(comm_id)}) == comm_id
    assert communication_id_in_query({"lqs_id": "not-a-uuid"}) is None
    assert communication_id_in_query({}) is None


async def test_twilio_sends_the_callback_url_with_our_id() -> None:
    from lqs.domain.delivery import TwilioSettings

    comm_id = UUID("0b1c7f0e-3a43-4d4e-9f62-0f7c1d2e3a4b")
    settings = TwilioSettings.model_validate(TWILIO)
    message = OutboundMessage(
        communication_id=comm_id, client_id=comm_id, lead_id=comm_id, channel="sms",
        recipient="+12015550123", subject=None, content="hi",
    )  # fmt: skip
    form = TwilioProvider(None).form(settings, message)  # type: ignore[arg-type]
    assert form["StatusCallback"].endswith(f"&lqs_id={comm_id}")


class Raising(Scripted):
    """A provider adapter with a defect: it raises instead of returning a SendResult."""

    def __init__(self, name: str, error: Exception) -> None:
        super().__init__(name)
        self.error = error

    async def send(self, settings: Any, message: OutboundMessage) -> SendResult:
        self.calls.append(message)
        raise self.error


async def test_an_adapter_that_raises_fails_its_message_instead_of_leasing_it_forever(
    pool: AsyncConnectionPool,
) -> None:
    _, [comm_id] = await _pending(pool, delivery=SENDGRID_FIRST)
    broken = Raising("sendgrid", UnicodeError("label empty or too long\x00"))
    options = DispatcherOptions(batches=False, policy=FAST, lease_seconds=30)
    async with Dispatcher(pool, options, providers={"sendgrid": broken}) as dispatcher:
        stats = await dispatcher.drain()
    assert stats.failed >= 1
    assert [m.communication_id for m in broken.calls].count(comm_id) == 1
    comm = await _comm(pool, comm_id)
    assert comm["status"] == "failed"
    assert comm["error_message"] == (
        "internal error while sending: UnicodeError: label empty or too long\\x00"
    )
    assert await _queued(pool, comm_id) is None


async def test_a_lost_connection_while_sending_leaves_the_lease_to_expire(
    pool: AsyncConnectionPool,
) -> None:
    _, [comm_id] = await _pending(pool, delivery=SENDGRID_FIRST)
    lost = Raising("sendgrid", psycopg.OperationalError("server closed the connection"))
    async with Dispatcher(pool, _options(), providers={"sendgrid": lost}) as dispatcher:
        stats = await dispatcher.drain()
    assert stats.failed == stats.sent == 0
    assert (await _comm(pool, comm_id))["status"] == "pending"
    retry = await _retry_after_the_lease(pool, "sendgrid")
    assert [m.communication_id for m in retry.calls] == [comm_id]
    assert (await _comm(pool, comm_id))["status"] == "sent"
