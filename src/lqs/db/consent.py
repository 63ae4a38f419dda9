"""SQL for consent: a lead's withdrawal and the append-only consent history."""

from __future__ import annotations

from uuid import UUID

from psycopg import AsyncConnection

from lqs.domain.notifications import normalise_recipient


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
