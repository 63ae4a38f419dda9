"""A suppressed recipient is recognised in whatever whitespace it arrives.

The suppression list is stored, and every check compares, in the one form
:func:`lqs.domain.notifications.normalise_recipient` gives: Python's ``str.strip`` (tabs,
newlines and no-break spaces too) and lower-case email. The dispatcher's claim used to
normalise in SQL (``btrim``, spaces only), so a recipient ending in a tab or a newline, or
starting with a no-break space, was rejected by the processor and sent by the dispatcher.
"""

from __future__ import annotations

import uuid
from uuid import UUID

import pytest
from psycopg_pool import AsyncConnectionPool

from lqs.db.clients import create_client
from lqs.db.communications import NewCommunication, record_communications
from lqs.db.dispatch import claim_due
from lqs.db.leads import insert_or_merge_leads
from lqs.db.suppressions import list_suppressions, suppress, suppressed_recipients, unsuppress
from lqs.domain.leads import parse_lead
from lqs.domain.notifications import normalise_recipient
from lqs.domain.vocabulary import Channel

ODD_WHITESPACE = {
    "tab": "\t",
    "newline": "\n",
    "carriage return": "\r\n",
    "no-break space": "\u00a0",
    "em space": "\u2003",
    "plain space": " ",
}


async def _client_and_lead(pool: AsyncConnectionPool) -> tuple[UUID, UUID]:
    slug = f"s-{uuid.uuid4().hex[:10]}"
    async with pool.connection() as conn:
        client = await create_client(conn, slug, slug, {})
        [lead] = await insert_or_merge_leads(
            conn, client.id, [parse_lead({"email": f"lead@{slug}.example"})]
        )
    return client.id, lead.id


async def _queue(
    pool: AsyncConnectionPool, client_id: UUID, lead_id: UUID, channel: str, recipients: list[str]
) -> None:
    async with pool.connection() as conn:
        await record_communications(
            conn,
            [
                NewCommunication(
                    lead_id=lead_id, client_id=client_id, type=channel, recipient=recipient,
                    subject=None, content="hello", status="pending", template_id="t@v1",
                    template_variables={}, priority=5, campaign_id=None,
                    consent_status="granted", compliance_notes=None, error_message=None,
                )
                for recipient in recipients
            ],
        )  # fmt: skip


async def _claimed_suppressed(pool: AsyncConnectionPool, client_id: UUID) -> dict[str, bool]:
    async with pool.connection() as conn:
        claimed = await claim_due(conn, f"test-{uuid.uuid4().hex[:6]}", 1000, 60)
    return {m.recipient: m.suppressed for m in claimed if m.client_id == client_id}


@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize("space", ODD_WHITESPACE.values(), ids=ODD_WHITESPACE.keys())
async def test_claim_sees_an_email_suppressed_whatever_whitespace_surrounds_it(
    pool: AsyncConnectionPool, space: str, where: str
) -> None:
    client_id, lead_id = await _client_and_lead(pool)
    async with pool.connection() as conn:
        await suppress(conn, client_id, "email", "Blocked@Example.com", "manual", "test")
    odd = f"{space}BLOCKED@example.com" if where == "before" else f"blocked@EXAMPLE.com{space}"
    await _queue(pool, client_id, lead_id, "email", [odd, "welcome@example.com"])

    claimed = await _claimed_suppressed(pool, client_id)

    assert claimed == {odd: True, "welcome@example.com": False}


@pytest.mark.parametrize("space", ODD_WHITESPACE.values(), ids=ODD_WHITESPACE.keys())
async def test_claim_sees_a_phone_suppressed_whatever_whitespace_surrounds_it(
    pool: AsyncConnectionPool, space: str
) -> None:
    client_id, lead_id = await _client_and_lead(pool)
    async with pool.connection() as conn:
        await suppress(conn, client_id, "sms", "+14155550100", "manual", "test")
    odd = f"{space}+14155550100{space}"
    await _queue(pool, client_id, lead_id, "sms", [odd, "+14155550101"])

    claimed = await _claimed_suppressed(pool, client_id)

    assert claimed == {odd: True, "+14155550101": False}


@pytest.mark.parametrize("space", ODD_WHITESPACE.values(), ids=ODD_WHITESPACE.keys())
async def test_processor_and_claim_agree_on_what_is_suppressed(
    pool: AsyncConnectionPool, space: str
) -> None:
    client_id, lead_id = await _client_and_lead(pool)
    odd = f"{space}Sales@Example.com{space}"
    async with pool.connection() as conn:
        await suppress(conn, client_id, "email", "sales@example.com", "bounce", "test")
        # What the processor asks before planning a message.
        processor_view = await suppressed_recipients(
            conn, [(client_id, "email", normalise_recipient(Channel.EMAIL, odd))]
        )
    await _queue(pool, client_id, lead_id, "email", [odd])

    claimed = await _claimed_suppressed(pool, client_id)

    assert processor_view == {(client_id, "email", "sales@example.com")}
    assert claimed == {odd: True}


async def test_suppress_stores_and_unsuppress_finds_the_normalised_form(
    pool: AsyncConnectionPool,
) -> None:
    client_id, _ = await _client_and_lead(pool)
    async with pool.connection() as conn:
        assert await suppress(conn, client_id, "email", "\u00a0Ada@Example.com\t", "manual", None)
        assert not await suppress(conn, client_id, "email", "ada@example.com", "manual", None)
        stored = [s.recipient for s in await list_suppressions(conn, client_id)]
        removed = await unsuppress(conn, client_id, "email", "ADA@example.com\n")
        left = await list_suppressions(conn, client_id)

    assert stored == ["ada@example.com"]
    assert removed
    assert left == []
