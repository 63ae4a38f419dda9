"""SQL for consent: a lead's withdrawal, the append-only consent history, and the one-click
unsubscribe that withdraws consent and suppresses the address in one transaction."""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from lqs.db.suppressions import suppress
from lqs.domain.notifications import normalise_recipient
from lqs.domain.unsubscribe import Unsubscribe


async def withdraw_consent(
    conn: AsyncConnection,
    client_id: UUID,
    lead_id: UUID | None,
    channel: str,
    recipient: str,
    *,
    source: str,
    communication_id: UUID | None = None,
) -> None:
    """Record a withdrawal in the consent history and on the lead (when it is the lead's
    own address)."""
    address = normalise_recipient(channel, recipient)
    if lead_id is not None:
        await conn.execute(
            "UPDATE public.leads SET consent_status = 'withdrawn', consent_source = %s,"
            " consent_at = now()"
            " WHERE id = %s AND client_id = %s AND consent_status <> 'withdrawn'"
            "   AND (lower(email) = %s OR phone = %s)",
            (source[:255], lead_id, client_id, address, address),
        )
    await conn.execute(
        "INSERT INTO public.consent_history"
        " (client_id, lead_id, channel, recipient, consent_status, source, communication_id)"
        " VALUES (%s, %s, %s, %s, 'withdrawn', %s, %s)",
        (client_id, lead_id, channel, address, source[:100], communication_id),
    )


class UnsubscribeOutcome(StrEnum):
    """What :func:`unsubscribe` did (the values are the API's metric labels)."""

    UNSUBSCRIBED = "unsubscribed"
    """The address was suppressed or the lead's consent withdrawn just now."""
    ALREADY = "already"
    """Both had been done before: nothing changed."""
    UNKNOWN_CLIENT = "unknown_client"
    """The client the token names no longer exists: nothing changed."""


async def unsubscribe(pool: AsyncConnectionPool, found: Unsubscribe) -> UnsubscribeOutcome:
    """Suppress the token's address and withdraw the lead's consent to it, in one
    transaction; doing it twice is harmless (the second time answers ``ALREADY``).

    Not retried on a lost connection: a retry after a COMMIT whose answer was lost would
    answer ``ALREADY`` for a click that did unsubscribe.
    """
    async with pool.connection() as conn, conn.transaction():
        return await _unsubscribe(conn, found)


async def _unsubscribe(conn: AsyncConnection, found: Unsubscribe) -> UnsubscribeOutcome:
    cur = await conn.execute(
        "SELECT 1 FROM public.clients WHERE id = %s FOR KEY SHARE", (found.client_id,)
    )
    if await cur.fetchone() is None:
        return UnsubscribeOutcome.UNKNOWN_CLIENT
    added = await suppress(
        conn,
        found.client_id,
        found.channel,
        found.recipient,
        "unsubscribe",
        f"one-click unsubscribe (communication {found.communication_id})",
    )
    # The address may be suppressed already (a bounce, by hand) while the lead's
    # consent still stands: the click must withdraw it all the same.
    address = normalise_recipient(found.channel, found.recipient)
    cur = await conn.execute(
        "SELECT id, consent_status <> 'withdrawn' AND (lower(email) = %s OR phone = %s)"
        " FROM public.leads WHERE id = %s AND client_id = %s FOR UPDATE",
        (address, address, found.lead_id, found.client_id),
    )
    lead = await cur.fetchone()
    consent_stands = lead is not None and lead[1] is True
    if not (added or consent_stands):
        return UnsubscribeOutcome.ALREADY
    await withdraw_consent(
        conn,
        found.client_id,
        lead[0] if lead else None,
        found.channel,
        found.recipient,
        source="unsubscribe link",
        communication_id=found.communication_id,
    )
    return UnsubscribeOutcome.UNSUBSCRIBED
