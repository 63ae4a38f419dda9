"""Two places move a communication's status: a provider's delivery event, decided in Python
(:func:`lqs.domain.events.transition`), and the dispatcher's own record of an attempt, decided
in SQL (``lqs.db.dispatch._RECORD``). Both are run here over every status x step, each step
paired with the event that means the same thing, and must agree, but for the differences
listed in :data:`INTENDED` with their reason.

Events with no step counterpart (delivered, bounced, complaints, unsubscribes, engagement)
are decided by ``transition`` alone; tests/unit/test_event_transitions.py has their table.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from uuid import UUID

from psycopg_pool import AsyncConnectionPool

from lqs.db.clients import create_client
from lqs.db.dispatch import Ack, record_acks
from lqs.domain.delivery import NextStep
from lqs.domain.events import DeliveryEvent, EventKind, transition
from lqs.domain.vocabulary import CommunicationStatus as Status

OWNER = "status-matrix-worker"

SAME_AS: dict[NextStep, EventKind] = {
    NextStep.SENT: EventKind.ACCEPTED,  # the provider took the message
    NextStep.RETRIED: EventKind.DELAYED,  # not delivered yet, tried again later
    NextStep.FAILED: EventKind.FAILED,  # the provider could not send it
    NextStep.REJECTED: EventKind.DROPPED,  # not to be sent to this recipient
    NextStep.SETTLED: EventKind.OTHER,  # nothing new about the message
    NextStep.DEFERRED: EventKind.OTHER,  # held back for its send window: its status stays
}
"""Each step and the delivery event that says the same thing about a message."""

INTENDED: dict[tuple[Status, NextStep], str] = {
    (Status.SENT, NextStep.FAILED): (
        "the provider reported it accepted the message: our failed attempt (a timeout, a "
        "lost answer) reached it, so the message stays sent"
    ),
    (Status.SENT, NextStep.REJECTED): (
        "the provider reported it accepted an earlier, in-doubt attempt: the message went "
        "out, and recording it as rejected (not sent) would be false"
    ),
}
"""Where the dispatcher's record keeps the status an event would change, and why."""


def _event(step: NextStep) -> DeliveryEvent:
    return DeliveryEvent(
        provider="resend",
        event_id=f"evt_{uuid.uuid4().hex}",
        kind=SAME_AS[step],
        raw_type=SAME_AS[step].value,
        external_id="re_matrix",
        occurred_at=datetime(2026, 5, 4, 9, 30, tzinfo=UTC),
        reason="why",
    )


def _by_event(status: Status, step: NextStep) -> Status:
    change = transition(status, _event(step))
    return change.status if change.status is not None else status


async def _leased_communication(
    pool: AsyncConnectionPool, client_id: UUID, lead_id: UUID, status: Status
) -> UUID:
    """A communication in ``status`` whose attempt 1 ``OWNER`` holds (not due for an hour)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO public.communications (client_id, lead_id, type, recipient, subject,"
            " content, status) VALUES (%s, %s, 'email', 'ann@buyer.example', 'Hello', 'Hi', %s)"
            " RETURNING id",
            (client_id, lead_id, status.value),
        )
        row = await cur.fetchone()
        assert row is not None
        await conn.execute(
            "INSERT INTO public.delivery_queue (communication_id, client_id, to_lead, attempts,"
            " lease_owner, lease_expires_at, next_attempt_at)"
            " VALUES (%s, %s, true, 1, %s, now() + interval '1 hour', now() + interval '1 hour')",
            (row[0], client_id, OWNER),
        )
    return UUID(str(row[0]))


def _ack(comm_id: UUID, client_id: UUID, step: NextStep) -> Ack:
    sent = step is NextStep.SENT
    return Ack(
        comm_id,
        1,
        step,
        1 if step is NextStep.RETRIED else 0,
        provider="resend",
        external_id=f"re_{uuid.uuid4().hex}" if sent else None,
        external_reference={"id": "re_matrix"} if sent else None,
        error_message=None if sent else "why",
        compliance_notes="why" if step is NextStep.REJECTED else None,
        delay=60.0 if step is NextStep.RETRIED else None,
        defer_until=datetime.now(UTC) + timedelta(hours=8) if step is NextStep.DEFERRED else None,
        sent_at=datetime.now(UTC) if sent else None,
        client_id=client_id if sent else None,
    )


async def test_the_dispatchers_record_and_delivery_events_agree_on_every_status_and_step(
    pool: AsyncConnectionPool,
) -> None:
    slug = f"matrix-{uuid.uuid4().hex[:10]}"
    async with pool.connection() as conn:
        client_id = (await create_client(conn, slug, slug, {})).id
        cur = await conn.execute(
            "INSERT INTO public.leads (client_id, email, consent_status, status)"
            " VALUES (%s, 'ann@buyer.example', 'granted', 'qualified') RETURNING id",
            (client_id,),
        )
        lead = await cur.fetchone()
    assert lead is not None
    cases = {
        (status, step): await _leased_communication(pool, client_id, lead[0], status)
        for status in Status
        for step in NextStep
    }

    async with pool.connection() as conn:
        held = await record_acks(
            conn, OWNER, [_ack(comm, client_id, step) for (_, step), comm in cases.items()]
        )
        cur = await conn.execute(
            "SELECT id, status FROM public.communications WHERE id = ANY(%s)",
            (list(cases.values()),),
        )
        by_record = {row[0]: Status(row[1]) for row in await cur.fetchall()}

    assert held == set(cases.values())
    disagreements = {
        (status.value, step.value): (by_record[comm].value, _by_event(status, step).value)
        for (status, step), comm in cases.items()
        if by_record[comm] is not _by_event(status, step) and (status, step) not in INTENDED
    }
    assert disagreements == {}, "(status, step): (by the record SQL, by transition())"
    still_different = {case for case in INTENDED if by_record[cases[case]] is not _by_event(*case)}
    assert still_different == set(INTENDED), "an intended difference is gone: drop it"
