"""SQL for consent: the append-only consent history (changes from intake and CSV imports,
with their proof), a lead's withdrawal, and the one-click unsubscribe that withdraws
consent and suppresses the address in one transaction.

Every change of consent appends an entry; none is ever updated (the table's trigger
refuses UPDATE).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from lqs.db.suppressions import suppress
from lqs.domain.consent import MAX_SOURCE, ConsentProof, ReliedEntry, evidence_json
from lqs.domain.notifications import normalise_recipient
from lqs.domain.unsubscribe import Unsubscribe
from lqs.domain.vocabulary import ConsentStatus


@dataclass(frozen=True)
class ConsentChange:
    """The consent a lead was just submitted with (API or CSV import)."""

    lead_id: UUID
    channel: str
    recipient: str
    consent_status: ConsentStatus
    source: str
    proof: ConsentProof | None


_APPEND_CHANGES = """
INSERT INTO public.consent_history (
    client_id, lead_id, channel, recipient, consent_status, source, text_version,
    consent_text, captured_at, ip, user_agent, api_key_id, evidence
)
SELECT %(client_id)s, r.lead_id, r.channel, r.recipient, r.consent_status, r.source,
       r.text_version, r.consent_text, r.captured_at, r.ip, r.user_agent, %(key)s, %(evidence)s
FROM jsonb_to_recordset(%(changes)s) AS r(
    lead_id uuid, channel text, recipient text, consent_status text, source text,
    has_proof boolean, text_version text, consent_text text, captured_at timestamptz,
    ip inet, user_agent text
)
-- The lead's latest entry on its own address (not one on a client's address that a
-- complaint about a notification recorded with the lead's id).
LEFT JOIN LATERAL (
    SELECT h.* FROM public.consent_history AS h
    JOIN public.leads AS l ON l.id = h.lead_id
    WHERE h.lead_id = r.lead_id AND h.recipient IN (lower(l.email), l.phone)
    ORDER BY h.id DESC LIMIT 1
) AS latest ON true
-- Only a change: the lead's first entry, another status, or a consent record whose
-- evidence differs from the latest entry's (a resubmission of the same proof is not one).
WHERE latest.id IS NULL
   OR latest.consent_status <> r.consent_status
   OR (r.has_proof AND (latest.source, latest.text_version, latest.consent_text,
                        latest.captured_at, latest.ip, latest.user_agent)
       IS DISTINCT FROM (r.source, r.text_version, r.consent_text, r.captured_at, r.ip,
                         r.user_agent))
RETURNING id
"""


async def record_consent_changes(
    conn: AsyncConnection,
    client_id: UUID,
    changes: Sequence[ConsentChange],
    *,
    api_key_id: UUID | None = None,
    evidence: Mapping[str, str] | None = None,
) -> list[int]:
    """Append to the consent history each change that is one, in one statement: the
    lead's first entry, a status other than its latest entry's, or a consent record whose
    evidence (source, wording, capture time, address, user agent) differs from the latest
    entry's. The same status again without a consent record appends nothing.

    ``api_key_id`` names the key that submitted the changes; ``evidence`` is kept as it
    is (a CSV import's file and operator). Returns the ids of the entries appended.
    Must run inside the caller's transaction.
    """
    if not changes:
        return []
    rows: list[dict[str, Any]] = [
        {
            "lead_id": str(c.lead_id),
            "channel": c.channel,
            "recipient": normalise_recipient(c.channel, c.recipient),
            "consent_status": c.consent_status.value,
            "source": c.source[:MAX_SOURCE],
            "has_proof": c.proof is not None,
            **evidence_json(c.proof),
        }
        for c in changes
    ]
    cur = await conn.execute(
        _APPEND_CHANGES,
        {
            "client_id": client_id,
            "key": api_key_id,
            "evidence": Jsonb(dict(evidence)) if evidence else None,
            "changes": Jsonb(rows),
        },
    )
    return [row[0] for row in await cur.fetchall()]


_LATEST_ENTRIES = """
SELECT l.id, h.id, h.consent_status, h.source, h.recorded_at, k.name, k.prefix
FROM public.leads AS l
CROSS JOIN LATERAL (
    SELECT e.id, e.consent_status, e.source, e.recorded_at, e.api_key_id
    FROM public.consent_history AS e
    WHERE e.lead_id = l.id AND e.recipient IN (lower(l.email), l.phone)
    ORDER BY e.id DESC LIMIT 1
) AS h
LEFT JOIN public.api_keys AS k ON k.id = h.api_key_id
WHERE l.id = ANY(%s) AND h.consent_status = l.consent_status
"""


async def relied_entries(
    conn: AsyncConnection, lead_ids: Sequence[UUID]
) -> dict[UUID, ReliedEntry]:
    """For each lead, the consent history entry its consent rests on: its latest entry on
    its own address, when that entry says what the lead's record says. A lead without
    one (consent from before the history kept proof, or no entry) is left out."""
    if not lead_ids:
        return {}
    cur = await conn.execute(_LATEST_ENTRIES, (list(lead_ids),))
    return {
        lead_id: ReliedEntry(entry_id, status, source, at, key_name, key_prefix)
        for lead_id, entry_id, status, source, at, key_name, key_prefix in await cur.fetchall()
    }


async def withdraw_consent(
    conn: AsyncConnection,
    client_id: UUID,
    lead_id: UUID | None,
    channel: str,
    recipient: str,
    *,
    source: str,
    communication_id: UUID | None = None,
    evidence: Mapping[str, str] | None = None,
) -> None:
    """Record a withdrawal in the consent history (with ``evidence``: the provider event
    that reported it) and on the lead (when it is the lead's own address)."""
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
        "INSERT INTO public.consent_history (client_id, lead_id, channel, recipient,"
        " consent_status, source, communication_id, evidence)"
        " VALUES (%s, %s, %s, %s, 'withdrawn', %s, %s, %s)",
        (
            client_id,
            lead_id,
            channel,
            address,
            source[:MAX_SOURCE],
            communication_id,
            Jsonb(dict(evidence)) if evidence else None,
        ),
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
