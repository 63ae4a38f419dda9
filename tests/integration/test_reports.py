"""The report queries ``lqs demo`` prints, against a real database.

One module-wide scene: client ``a`` has leads and messages in every state the reports
count, client ``b`` has one of each kind too and must never appear in ``a``'s report.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

import pytest
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from lqs.db.clients import create_api_key, create_client, delete_clients
from lqs.db.communications import NewCommunication, record_communications
from lqs.db.consent import withdraw_consent
from lqs.db.leads import insert_or_merge_leads
from lqs.db.reports import (
    CommunicationCount,
    ConsentCount,
    EventCount,
    Latency,
    LeadCount,
    SuppressionCount,
    Unsettled,
    client_holdings,
    communications_by_status,
    consent_history_by_source,
    delivery_events_by_provider,
    latencies,
    leads_by_status,
    sample_delivered_lead,
    suppressions_by_reason,
    unsettled,
)
from lqs.db.suppressions import suppress
from lqs.domain.leads import parse_lead

BREAKDOWN = [{"rule_id": "title_ceo", "points": 40, "reason": "job title CEO"}]


@dataclass(frozen=True)
class Scene:
    client: UUID
    slug: str
    other: UUID
    best_lead: UUID
    best_email: UUID
    """The best lead's first email (delivered)."""


def _message(
    lead: UUID, client: UUID, channel: str, to: str, priority: int = 5
) -> NewCommunication:
    return NewCommunication(
        lead_id=lead, client_id=client, type=channel, recipient=to, subject=None,
        content="hello", status="pending", template_id="t@v1", template_variables={},
        priority=priority, campaign_id=None, consent_status="granted", compliance_notes=None,
        error_message=None,
    )  # fmt: skip


async def _communication(conn: AsyncConnection, lead: UUID, channel: str) -> UUID:
    cur = await conn.execute(
        "SELECT id FROM public.communications WHERE lead_id = %s AND type = %s", (lead, channel)
    )
    row = await cur.fetchone()
    assert row is not None
    return UUID(str(row[0]))


async def _populate(
    conn: AsyncConnection, slug: str, *, events: bool = True
) -> tuple[UUID, UUID, UUID]:
    """A client with two queued leads, a qualified and a nurture one, and their messages.

    Returns (client id, the qualified lead's id, its delivered email's id).
    """
    client = await create_client(conn, slug, slug, {})
    emails = [f"{name}@{slug}.example" for name in ("q1", "q2", "best", "warm")]
    _, _, best, warm = await insert_or_merge_leads(
        conn, client.id, [parse_lead({"email": e}) for e in emails]
    )
    await conn.execute(
        "UPDATE public.leads SET status = 'qualified', score = 90, grade = 'A',"
        " score_breakdown = %s WHERE id = %s",
        (Jsonb(BREAKDOWN), best.id),
    )
    await conn.execute(
        "UPDATE public.leads SET status = 'nurture', score = 40, grade = 'C' WHERE id = %s",
        (warm.id,),
    )
    await record_communications(
        conn,
        [
            _message(best.id, client.id, "email", emails[2]),
            _message(best.id, client.id, "sms", "+14155550100"),
            _message(warm.id, client.id, "email", emails[3]),
        ],
    )
    best_email = await _communication(conn, best.id, "email")
    best_sms = await _communication(conn, best.id, "sms")
    # Accepted 100 ms after intake, delivered 50 ms later, after one retry.
    await conn.execute(
        "UPDATE public.communications AS c SET status = 'delivered', provider = 'resend',"
        " retry_count = 1, sent_at = l.created_at + interval '100 ms',"
        " delivered_at = l.created_at + interval '150 ms'"
        " FROM public.leads AS l WHERE l.id = c.lead_id AND c.id = %s",
        (best_email,),
    )
    await conn.execute(
        "UPDATE public.communications SET status = 'rejected' WHERE id = %s", (best_sms,)
    )
    if events:
        await conn.execute(
            "INSERT INTO public.provider_events"
            " (client_id, provider, event_id, communication_id, event_type, kind, payload)"
            " VALUES (%(c)s, 'resend', 'e1', %(m)s, 'email.delivered', 'delivered', '{}'),"
            "        (%(c)s, 'resend', 'e2', NULL, 'email.bounced', 'bounced', '{}'),"
            "        (%(c)s, 'twilio', 'e3', NULL, 'undelivered', 'failed', '{}')",
            {"c": client.id, "m": best_email},
        )
    await suppress(conn, client.id, "email", f"gone@{slug}.example", "bounce", "resend event")
    await suppress(conn, client.id, "email", f"no@{slug}.example", "manual", None)
    await suppress(conn, client.id, "sms", "+14155550199", "manual", None)
    await withdraw_consent(
        conn, client.id, warm.id, "email", emails[3], source="resend unsubscribe"
    )
    return client.id, best.id, best_email


@pytest.fixture(scope="module")
async def scene(pool: AsyncConnectionPool) -> AsyncIterator[Scene]:
    slug, other_slug = f"r-{uuid.uuid4().hex[:8]}", f"r-{uuid.uuid4().hex[:8]}"
    async with pool.connection() as conn:
        client, best, best_email = await _populate(conn, slug)
        other, _, _ = await _populate(conn, other_slug, events=False)
    yield Scene(client, slug, other, best, best_email)
    async with pool.connection() as conn:
        await delete_clients(conn, [slug, other_slug])


async def test_unsettled_counts_queued_leads_and_pending_or_sent_messages(
    pool: AsyncConnectionPool, scene: Scene
) -> None:
    async with pool.connection() as conn:
        found = await unsettled(conn, [scene.client])
        both = await unsettled(conn, [scene.client, scene.other])

    assert found == Unsettled(queued_leads=2, open_communications=1)
    assert both == Unsettled(queued_leads=4, open_communications=2)


async def test_leads_by_status_per_client(pool: AsyncConnectionPool, scene: Scene) -> None:
    async with pool.connection() as conn:
        found = await leads_by_status(conn, [scene.client])

    assert found == [
        LeadCount(scene.slug, "nurture", 1),
        LeadCount(scene.slug, "qualified", 1),
        LeadCount(scene.slug, "queued", 2),
    ]


async def test_communications_by_channel_provider_and_status_with_retries(
    pool: AsyncConnectionPool, scene: Scene
) -> None:
    async with pool.connection() as conn:
        found = await communications_by_status(conn, [scene.client])

    assert found == [
        CommunicationCount("email", "-", "pending", 1, 0),
        CommunicationCount("email", "resend", "delivered", 1, 1),
        CommunicationCount("sms", "-", "rejected", 1, 0),
    ]


async def test_latencies_from_intake_to_acceptance_and_on_to_delivery(
    pool: AsyncConnectionPool, scene: Scene
) -> None:
    async with pool.connection() as conn:
        found = await latencies(conn, [scene.client])

    assert found == [
        Latency("intake → provider accepted", 1, 100.0, 100.0, 100.0),
        Latency("sent → delivered (webhook)", 1, 50.0, 50.0, 50.0),
    ]


async def test_latencies_of_clients_that_sent_nothing_are_empty(
    pool: AsyncConnectionPool,
) -> None:
    async with pool.connection() as conn:
        found = await latencies(conn, [uuid.uuid4()])

    assert found == [
        Latency("intake → provider accepted", 0, None, None, None),
        Latency("sent → delivered (webhook)", 0, None, None, None),
    ]


async def test_delivery_events_by_provider_count_the_unmatched(
    pool: AsyncConnectionPool, scene: Scene
) -> None:
    async with pool.connection() as conn:
        found = await delivery_events_by_provider(conn, [scene.client, scene.other])

    assert found == [EventCount("resend", 2, 1), EventCount("twilio", 1, 1)]


async def test_suppressions_by_reason(pool: AsyncConnectionPool, scene: Scene) -> None:
    async with pool.connection() as conn:
        found = await suppressions_by_reason(conn, [scene.client])

    assert found == [SuppressionCount("bounce", 1), SuppressionCount("manual", 2)]


async def test_consent_history_by_source(pool: AsyncConnectionPool, scene: Scene) -> None:
    async with pool.connection() as conn:
        found = await consent_history_by_source(conn, [scene.client, scene.other])

    assert found == [ConsentCount("resend unsubscribe", "withdrawn", 2)]


async def test_sample_is_the_best_qualified_lead_with_its_delivered_email(
    pool: AsyncConnectionPool, scene: Scene
) -> None:
    async with pool.connection() as conn:
        found = await sample_delivered_lead(conn, [scene.client])

    assert found is not None
    assert (found.id, found.communication_id) == (scene.best_lead, scene.best_email)
    assert (found.score, found.grade, found.status) == (90, "A", "qualified")
    assert found.score_breakdown == BREAKDOWN


async def test_no_sample_without_a_delivered_email_to_a_qualified_lead(
    pool: AsyncConnectionPool, scene: Scene
) -> None:
    async with pool.connection() as conn:
        found = await sample_delivered_lead(conn, [uuid.uuid4()])

    assert found is None


async def test_delete_clients_removes_them_and_what_is_theirs(pool: AsyncConnectionPool) -> None:
    slug = f"r-{uuid.uuid4().hex[:8]}"
    async with pool.connection() as conn:
        client, _, _ = await _populate(conn, slug)
        deleted = await delete_clients(conn, [slug, "no-such-client"])
        left = await unsettled(conn, [client])
        events = await delivery_events_by_provider(conn, [client])

    assert deleted == 1
    assert left == Unsettled(0, 0)
    assert events == []


async def test_no_client_ids_means_every_client(pool: AsyncConnectionPool, scene: Scene) -> None:
    async with pool.connection() as conn:
        every = await leads_by_status(conn, None)
        suppressed = await suppressions_by_reason(conn, None)

    slugs = {n.client_slug for n in every}
    assert scene.slug in slugs
    assert len(slugs) >= 2
    assert sum(n.recipients for n in suppressed) >= 6


async def test_since_keeps_what_was_created_at_or_after_it(
    pool: AsyncConnectionPool, scene: Scene
) -> None:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT created_at FROM public.leads WHERE client_id = %s ORDER BY created_at LIMIT 1",
            (scene.client,),
        )
        row = await cur.fetchone()
        assert row is not None
        first = row[0]
        later = first + timedelta(days=1)
        reports = [leads_by_status, communications_by_status, delivery_events_by_provider,
                   suppressions_by_reason, consent_history_by_source]  # fmt: skip
        everything = [await report(conn, [scene.client], first) for report in reports]
        nothing = [await report(conn, [scene.client], later) for report in reports]
        latency = await latencies(conn, [scene.client], later)

    assert all(everything), everything  # every kind of row exists at ``first``
    assert nothing == [[], [], [], [], []]
    assert [n.messages for n in latency] == [0, 0]


async def test_client_holdings_counts_what_the_client_holds(
    pool: AsyncConnectionPool, scene: Scene
) -> None:
    async with pool.connection() as conn:
        found = await client_holdings(conn, scene.client)
        missing = await client_holdings(conn, uuid.uuid4())
        async with conn.transaction(force_rollback=True):
            await create_api_key(conn, scene.client, "one", 60)
            with_key = await client_holdings(conn, scene.client)

    assert found is not None
    assert with_key is not None
    assert (with_key.live_api_keys, with_key.revoked_api_keys) == (1, 0)
    assert found.leads == {"nurture": 1, "qualified": 1, "queued": 2}
    assert (found.live_api_keys, found.revoked_api_keys, found.push_subscriptions) == (0, 0, 0)
    assert (found.templates, found.suppressions) == (0, 3)
    assert missing is None
