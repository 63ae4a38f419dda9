"""Quiet hours and frequency caps end to end: processor, dispatcher and the Twilio and
Resend adapters against the simulator, on a real database.

The dispatcher decides send windows on its ``clock`` (set here); the database's clock
still decides what is due, so a deferred message is sent "at its opening" by moving its
``next_attempt_at`` to now and the dispatcher's clock to the opening.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from lqs.db.clients import create_client
from lqs.db.communications import communication_timeline
from lqs.db.dispatch import lock_recipients, purge_recipient_sends, recent_sends, reserve_sends
from lqs.db.leads import insert_or_merge_leads
from lqs.db.tenant_reads import communication_detail
from lqs.domain.delivery import RetryPolicy
from lqs.domain.leads import parse_lead
from lqs.simulator import Faults, SimulatorConfig, SimulatorControl
from lqs.simulator.config import TwilioConfig
from lqs.worker.dispatcher import Dispatcher, DispatcherOptions, DispatchStats
from lqs.worker.processor import LeadProcessor

NEW_YORK = ZoneInfo("America/New_York")
PHONE = "+12015550123"  # New Jersey: America/New_York by phonenumbers' data
FAST = RetryPolicy(base_delay=0.01, max_delay=0.05, horizon=3600)
SMS_TO_LEAD = [{"channel": "sms", "to": "lead", "template": "lead_qualified_sms"}]
EMAIL_TO_LEAD = [{"channel": "email", "to": "lead", "template": "lead_acknowledgement"}]
DAYTIME = {"start": "08:00", "end": "21:00"}


@pytest.fixture
async def pool(pipeline_db: str) -> AsyncIterator[AsyncConnectionPool]:
    from lqs.db.pool import open_pool

    opened = await open_pool(pipeline_db, min_size=1, max_size=6, worker=True)
    yield opened
    await opened.close()


def _delivery(simulator: str) -> dict[str, Any]:
    return {
        "email": {"primary": "resend"},
        "resend": {"api_key": "re_test_fake", "from_address": "lqs@sender.example",
                   "base_url": simulator},
        "twilio": {"account_sid": "AC" + "0" * 32, "auth_token": "fake_token",
                   "from_number": "+12015550100", "base_url": simulator},
    }  # fmt: skip


async def _client(
    pool: AsyncConnectionPool, simulator: str, rules: list[dict[str, Any]], **settings: Any
) -> UUID:
    slug = f"q-{uuid.uuid4().hex[:10]}"
    every_outcome = {"qualified": rules, "nurture": rules, "disqualified": rules}
    async with pool.connection() as conn:
        client = await create_client(
            conn, slug, slug,
            {"delivery": _delivery(simulator), "notifications": every_outcome, **settings},
        )  # fmt: skip
    return client.id


async def _leads(pool: AsyncConnectionPool, client_id: UUID, *leads: dict[str, Any]) -> list[UUID]:
    """Store and process ``leads``; the ids of the communications they made, in order."""
    async with pool.connection() as conn:
        await insert_or_merge_leads(
            conn,
            client_id,
            [parse_lead({"consent_status": "granted", "job_title": "CEO", **lead})
             for lead in leads],
        )  # fmt: skip
    await LeadProcessor(pool, batch_size=1000, in_flight=1, park_after=3).drain()
    rows = await _rows(
        pool,
        "SELECT c.id FROM public.communications c JOIN public.leads l ON l.id = c.lead_id"
        " WHERE c.client_id = %s ORDER BY l.email",
        client_id,
    )
    return [r["id"] for r in rows]


async def _rows(pool: AsyncConnectionPool, sql: str, *params: Any) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(sql.encode(), params)
        return await cur.fetchall()


async def _one(pool: AsyncConnectionPool, sql: str, *params: Any) -> dict[str, Any]:
    [row] = await _rows(pool, sql, *params)
    return row


async def _drain(pool: AsyncConnectionPool, clock: Callable[[], datetime]) -> DispatchStats:
    options = DispatcherOptions(batches=False, policy=FAST, concurrency=8, batch_size=50)
    async with Dispatcher(pool, options, clock=clock) as dispatcher:
        return await dispatcher.drain()


def _sms_to(control: SimulatorControl, number: str) -> int:
    return sum(1 for m in control.messages("twilio") if number in m.recipients)


async def test_an_sms_due_at_23_00_local_waits_for_08_00_and_is_then_sent(
    pool: AsyncConnectionPool, simulator: str, control: SimulatorControl
) -> None:
    # A year ahead, so the deferral is in the database's future too; 2027-03-14 is the
    # day New York's clocks spring forward: 08:00 that day is EDT (-04:00).
    client_id = await _client(pool, simulator, SMS_TO_LEAD, send_window={"sms": DAYTIME})
    [comm_id] = await _leads(pool, client_id, {"email": "ann@bigco.example", "phone": PHONE})
    late = datetime(2027, 3, 13, 23, 0, tzinfo=NEW_YORK)

    stats = await _drain(pool, lambda: late)

    opening = datetime(2027, 3, 14, 8, 0, tzinfo=NEW_YORK)
    assert (stats.deferred, stats.sent, stats.retried) == (1, 0, 0)
    queued = await _one(
        pool, "SELECT * FROM public.delivery_queue WHERE communication_id = %s", comm_id
    )
    assert queued["next_attempt_at"] == opening
    assert (queued["lease_owner"], queued["lease_expires_at"]) == (None, None)
    comm = await _one(pool, "SELECT * FROM public.communications WHERE id = %s", comm_id)
    assert (comm["status"], comm["retry_count"], comm["error_message"]) == ("pending", 0, None)
    [deferral] = await _rows(
        pool, "SELECT * FROM public.delivery_attempts WHERE communication_id = %s", comm_id
    )
    reason = (
        "quiet hours: sms window 08:00-21:00 America/New_York; deferred to 2027-03-14T08:00-04:00"
    )
    assert (deferral["outcome"], deferral["error_code"], deferral["error_message"]) == (
        "deferred", "quiet_hours", reason,
    )  # fmt: skip
    assert deferral["recorded"] is True
    assert _sms_to(control, PHONE) == 0
    async with pool.connection() as conn:
        found = await communication_timeline(conn, comm_id)  # lqs comms show
        detail = await communication_detail(conn, comm_id)  # the API's and dashboard's
    assert found is not None
    assert f"attempt 1 deferred, not sent: {reason}" in [e.summary for e in found[1]]
    assert detail is not None
    assert [(a.outcome, a.provider, a.error_message) for a in detail.attempts] == [
        ("deferred", "lqs", reason)
    ]

    # The opening comes: the row is due, and the clock is inside the window.
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE public.delivery_queue SET next_attempt_at = now() WHERE communication_id = %s",
            (comm_id,),
        )
    stats = await _drain(pool, lambda: opening + timedelta(seconds=30))

    assert (stats.sent, stats.deferred) == (1, 0)
    comm = await _one(pool, "SELECT * FROM public.communications WHERE id = %s", comm_id)
    assert (comm["status"], comm["provider"], comm["retry_count"]) == ("sent", "twilio", 0)
    outcomes = await _rows(
        pool,
        "SELECT attempt, outcome FROM public.delivery_attempts WHERE communication_id = %s"
        " ORDER BY attempt",
        comm_id,
    )
    assert [(a["attempt"], a["outcome"]) for a in outcomes] == [(1, "deferred"), (2, "accepted")]
    assert _sms_to(control, PHONE) == 1


async def test_a_long_deferral_does_not_use_up_the_retry_horizon(
    pool: AsyncConnectionPool, simulator: str, control: SimulatorControl
) -> None:
    """The horizon (1 h here) counts from the first request, as the provider's idempotency
    window does: a message held back for 30 h still gets its retries."""
    control.configure(SimulatorConfig(seed=3, twilio=TwilioConfig(
        faults=Faults(script=["503", "ok"]))))  # fmt: skip
    client_id = await _client(pool, simulator, SMS_TO_LEAD, send_window={"sms": DAYTIME})
    [comm_id] = await _leads(pool, client_id, {"email": "bo@bigco.example", "phone": PHONE})
    late = datetime(2027, 3, 13, 23, 0, tzinfo=NEW_YORK)
    assert (await _drain(pool, lambda: late)).deferred == 1
    # The opening comes 30 h after the message was written (a weekend, a capped day).
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE public.communications SET created_at = now() - interval '30 hours'"
            " WHERE id = %s",
            (comm_id,),
        )
        await conn.execute(
            "UPDATE public.delivery_queue SET next_attempt_at = now() WHERE communication_id = %s",
            (comm_id,),
        )
    opening = datetime(2027, 3, 14, 8, 0, tzinfo=NEW_YORK)

    for _ in range(50):  # the retry is due 10-50 ms after the 503: drain until it went
        await _drain(pool, lambda: opening)
        comm = await _one(pool, "SELECT * FROM public.communications WHERE id = %s", comm_id)
        if comm["status"] != "pending":
            break
        await asyncio.sleep(0.1)

    assert (comm["status"], comm["retry_count"]) == ("sent", 1), comm["error_message"]
    outcomes = await _rows(
        pool,
        "SELECT outcome FROM public.delivery_attempts WHERE communication_id = %s ORDER BY attempt",
        comm_id,
    )
    assert [a["outcome"] for a in outcomes] == ["deferred", "transient", "accepted"]


async def test_an_email_whose_window_is_null_is_sent_at_once_at_night(
    pool: AsyncConnectionPool, simulator: str, control: SimulatorControl
) -> None:
    client_id = await _client(
        pool, simulator, EMAIL_TO_LEAD, send_window={"sms": DAYTIME, "email": None}
    )
    [comm_id] = await _leads(pool, client_id, {"email": "bob@bigco.example", "phone": PHONE})

    stats = await _drain(pool, lambda: datetime(2027, 3, 13, 23, 0, tzinfo=NEW_YORK))

    assert (stats.sent, stats.deferred) == (1, 0)
    comm = await _one(pool, "SELECT status FROM public.communications WHERE id = %s", comm_id)
    assert comm["status"] == "sent"


async def test_the_leads_own_time_zone_beats_its_phone_numbers(
    pool: AsyncConnectionPool, simulator: str, control: SimulatorControl
) -> None:
    client_id = await _client(pool, simulator, SMS_TO_LEAD, send_window={"sms": DAYTIME})
    await _leads(
        pool, client_id, {"email": "kenji@bigco.example", "phone": PHONE, "time_zone": "Asia/Tokyo"}
    )

    # 23:00 in New York is 13:00 the next day in Tokyo: inside the window there.
    stats = await _drain(pool, lambda: datetime(2027, 3, 13, 23, 0, tzinfo=NEW_YORK))

    assert (stats.sent, stats.deferred) == (1, 0)
    assert _sms_to(control, PHONE) == 1


async def test_messages_over_a_rejecting_cap_are_rejected_with_the_count(
    pool: AsyncConnectionPool, simulator: str, control: SimulatorControl
) -> None:
    # Three leads sharing one phone: three SMS to one recipient in one claim.
    client_id = await _client(
        pool, simulator, SMS_TO_LEAD, frequency_cap={"sms": {"max": 2, "action": "reject"}}
    )
    comm_ids = await _leads(
        pool, client_id, *({"email": f"p{i}@bigco.example", "phone": PHONE} for i in range(3))
    )

    stats = await _drain(pool, lambda: datetime.now(UTC))

    assert (stats.sent, stats.rejected) == (2, 1)
    comms = await _rows(
        pool,
        "SELECT status, compliance_notes FROM public.communications WHERE id = ANY(%s)",
        comm_ids,
    )
    assert sorted(c["status"] for c in comms) == ["rejected", "sent", "sent"]
    [rejected] = [c for c in comms if c["status"] == "rejected"]
    assert rejected["compliance_notes"] == (
        "frequency cap: 2 sms messages to this recipient in 24 h (max 2)"
    )
    assert _sms_to(control, PHONE) == 2
    counted = await _rows(
        pool,
        "SELECT channel, recipient FROM public.recipient_sends WHERE client_id = %s",
        client_id,
    )
    assert [(c["channel"], c["recipient"]) for c in counted] == [("sms", PHONE)] * 2


async def test_a_message_over_a_deferring_cap_waits_until_the_oldest_send_is_24_h_old(
    pool: AsyncConnectionPool, simulator: str, control: SimulatorControl
) -> None:
    client_id = await _client(
        pool, simulator, SMS_TO_LEAD, frequency_cap={"sms": {"max": 1, "action": "defer"}}
    )
    [first] = await _leads(pool, client_id, {"email": "a@bigco.example", "phone": PHONE})
    assert (await _drain(pool, lambda: datetime.now(UTC))).sent == 1
    sent = await _one(
        pool, "SELECT sent_at FROM public.recipient_sends WHERE communication_id = %s", first
    )

    comm_ids = await _leads(pool, client_id, {"email": "b@bigco.example", "phone": PHONE})
    [second] = [c for c in comm_ids if c != first]
    stats = await _drain(pool, lambda: datetime.now(UTC))

    assert (stats.deferred, stats.sent) == (1, 0)
    queued = await _one(
        pool, "SELECT next_attempt_at FROM public.delivery_queue WHERE communication_id = %s",
        second,
    )  # fmt: skip
    assert queued["next_attempt_at"] == sent["sent_at"] + timedelta(hours=24)
    attempt = await _one(
        pool, "SELECT * FROM public.delivery_attempts WHERE communication_id = %s", second
    )
    assert (attempt["outcome"], attempt["error_code"]) == ("deferred", "frequency_cap")
    assert attempt["error_message"].startswith(
        "frequency cap: 1 sms messages to this recipient in 24 h (max 1); deferred to "
    )
    comm = await _one(pool, "SELECT * FROM public.communications WHERE id = %s", second)
    assert (comm["status"], comm["retry_count"], comm["compliance_notes"]) == ("pending", 0, None)
    assert _sms_to(control, PHONE) == 1


async def test_messages_to_the_clients_staff_ignore_windows_and_caps(
    pool: AsyncConnectionPool, simulator: str, control: SimulatorControl
) -> None:
    staff = [{"channel": "sms", "to": "client", "template": "lead_qualified_sms"}]
    client_id = await _client(
        pool, simulator, staff, notification_phone=PHONE, send_window={"sms": DAYTIME},
        frequency_cap={"sms": {"max": 1, "action": "reject"}},
    )  # fmt: skip
    await _leads(pool, client_id, *({"email": f"s{i}@bigco.example"} for i in range(2)))

    stats = await _drain(pool, lambda: datetime(2027, 3, 13, 23, 0, tzinfo=NEW_YORK))

    assert (stats.sent, stats.deferred, stats.rejected) == (2, 0, 0)


async def test_send_rules_stored_invalid_fail_the_message_with_the_bad_key(
    pool: AsyncConnectionPool, simulator: str, control: SimulatorControl
) -> None:
    client_id = await _client(pool, simulator, SMS_TO_LEAD)
    [comm_id] = await _leads(pool, client_id, {"email": "z@bigco.example", "phone": PHONE})
    async with pool.connection() as conn:
        # Written around the settings' validation, as a hand edit of the row would be.
        await conn.execute(
            "UPDATE public.clients SET settings = settings || %s WHERE id = %s",
            (Jsonb({"send_window": {"sms": {"start": "8am", "end": "21:00"}}}), client_id),
        )

    await _drain(pool, lambda: datetime.now(UTC))

    comm = await _one(pool, "SELECT * FROM public.communications WHERE id = %s", comm_id)
    assert comm["status"] == "failed"
    assert comm["error_message"] == (
        "invalid send rules: send_window.sms.start: '8am' is not a time of day: use HH:MM,"
        " 00:00 to 23:59"
    )
    assert _sms_to(control, PHONE) == 0


async def test_the_purge_keeps_only_the_sends_a_cap_still_counts(
    pool: AsyncConnectionPool, simulator: str, control: SimulatorControl
) -> None:
    client_id = await _client(pool, simulator, SMS_TO_LEAD)
    comm_ids = await _leads(
        pool, client_id, *({"email": f"o{i}@bigco.example", "phone": PHONE} for i in range(2))
    )
    now = datetime.now(UTC)
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO public.recipient_sends (communication_id, client_id, channel,"
            " recipient, sent_at) VALUES (%s, %s, 'sms', %s, %s), (%s, %s, 'sms', %s, %s)",
            (comm_ids[0], client_id, PHONE, now - timedelta(hours=25),
             comm_ids[1], client_id, PHONE, now - timedelta(hours=23)),
        )  # fmt: skip
        purged = await purge_recipient_sends(conn, now - timedelta(hours=24))

    assert purged == 1
    kept = await _rows(
        pool, "SELECT communication_id FROM public.recipient_sends WHERE client_id = %s", client_id
    )
    assert [k["communication_id"] for k in kept] == [comm_ids[1]]


async def test_a_send_recorded_after_the_claims_clock_still_counts_toward_the_cap(
    pool: AsyncConnectionPool, simulator: str, control: SimulatorControl
) -> None:
    """What a claim that waited for the recipient's lock finds: another worker's send,
    stamped by that worker's clock a moment after this claim read its own. (Left out as
    "after now", it let a third message through a cap of two when a loaded machine made
    the wait long.)"""
    client_id = await _client(
        pool, simulator, SMS_TO_LEAD, frequency_cap={"sms": {"max": 1, "action": "reject"}}
    )
    earlier, later = await _leads(
        pool, client_id, *({"email": f"l{i}@bigco.example", "phone": PHONE} for i in range(2))
    )
    now = datetime.now(UTC)
    async with pool.connection() as conn:
        await conn.execute(
            "DELETE FROM public.delivery_queue WHERE communication_id = %s", (earlier,)
        )
        await conn.execute(
            "INSERT INTO public.recipient_sends (communication_id, client_id, channel,"
            " recipient, sent_at) VALUES (%s, %s, 'sms', %s, %s)",
            (earlier, client_id, PHONE, now + timedelta(milliseconds=500)),
        )

    stats = await _drain(pool, lambda: now)

    assert (stats.sent, stats.rejected) == (0, 1)
    [comm] = await _rows(
        pool, "SELECT status, compliance_notes FROM public.communications WHERE id = %s", later
    )
    assert comm["status"] == "rejected"
    assert comm["compliance_notes"].startswith("frequency cap: 1 sms messages")
    assert _sms_to(control, PHONE) == 0


async def test_two_workers_racing_for_one_recipient_send_no_more_than_the_cap(
    pool: AsyncConnectionPool, simulator: str, control: SimulatorControl
) -> None:
    """Two dispatchers claiming one message at a time, side by side: the second claim to
    the recipient waits for the first to commit and counts its send."""
    client_id = await _client(
        pool, simulator, SMS_TO_LEAD, frequency_cap={"sms": {"max": 2, "action": "reject"}}
    )
    comm_ids = await _leads(
        pool, client_id, *({"email": f"r{i}@bigco.example", "phone": PHONE} for i in range(8))
    )
    options = DispatcherOptions(batches=False, policy=FAST, concurrency=4, batch_size=1)

    async def worker() -> DispatchStats:
        async with Dispatcher(pool, options, clock=lambda: datetime.now(UTC)) as dispatcher:
            return await dispatcher.drain()

    first, second = await asyncio.gather(worker(), worker())

    assert (first.sent + second.sent, first.rejected + second.rejected) == (2, 6)
    comms = await _rows(
        pool, "SELECT status FROM public.communications WHERE id = ANY(%s)", comm_ids
    )
    assert sorted(c["status"] for c in comms) == ["rejected"] * 6 + ["sent"] * 2
    assert _sms_to(control, PHONE) == 2
    counted = await _rows(
        pool, "SELECT count(*) AS n FROM public.recipient_sends WHERE client_id = %s", client_id
    )
    assert counted[0]["n"] == 2


async def test_a_claims_reservation_holds_another_claim_to_the_recipient_until_it_commits(
    pool: AsyncConnectionPool, simulator: str
) -> None:
    client_id = await _client(pool, simulator, SMS_TO_LEAD)
    [comm_id] = await _leads(pool, client_id, {"email": "h@bigco.example", "phone": PHONE})
    key = (client_id, "sms", PHONE)
    now = datetime.now(UTC)
    since = now - timedelta(hours=24)
    async with pool.connection() as first, pool.connection() as second:
        await first.execute("BEGIN")
        await lock_recipients(first, [key])
        await reserve_sends(first, [(comm_id, key)], now)

        async def count() -> dict[Any, list[datetime]]:
            async with second.transaction():
                await lock_recipients(second, [key])
                return await recent_sends(second, [key], since)

        waiting = asyncio.create_task(count())
        await asyncio.sleep(0.3)
        assert not waiting.done()  # the lock holds it while the first claim is open
        await first.execute("COMMIT")
        seen = await asyncio.wait_for(waiting, 10)

        assert seen == {key: [now]}
        # The message being decided again (its lease expired) does not count itself.
        async with second.transaction():
            assert await recent_sends(second, [key], since, excluding=[comm_id]) == {}


async def test_a_send_that_fails_gives_its_reservation_back(
    pool: AsyncConnectionPool, simulator: str, control: SimulatorControl
) -> None:
    control.configure(SimulatorConfig(seed=3, twilio=TwilioConfig(
        faults=Faults(script=["400"]))))  # fmt: skip
    client_id = await _client(
        pool, simulator, SMS_TO_LEAD, frequency_cap={"sms": {"max": 1, "action": "reject"}}
    )
    await _leads(pool, client_id, {"email": "f0@bigco.example", "phone": PHONE})
    assert (await _drain(pool, lambda: datetime.now(UTC))).failed == 1  # refused by Twilio

    counted = await _rows(
        pool, "SELECT communication_id FROM public.recipient_sends WHERE client_id = %s", client_id
    )
    assert counted == []
    # So the next message to the recipient is within the cap, and is sent.
    comm_ids = await _leads(pool, client_id, {"email": "f1@bigco.example", "phone": PHONE})
    stats = await _drain(pool, lambda: datetime.now(UTC))
    assert (stats.sent, stats.rejected) == (1, 0)
    sent = await _rows(
        pool, "SELECT id FROM public.communications WHERE id = ANY(%s) AND status = 'sent'",
        comm_ids,
    )  # fmt: skip
    counted = await _rows(
        pool, "SELECT communication_id FROM public.recipient_sends WHERE client_id = %s", client_id
    )
    assert [c["communication_id"] for c in counted] == [s["id"] for s in sent]
