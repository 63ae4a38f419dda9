"""SQL for the outbox side of qualification: templates, suppressions, communications.

A communication is recorded (``pending``, ``rejected`` or ``failed``) in the seed's table
in the same statement that queues the pending ones for delivery.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

COMMUNICATIONS_PENDING_CHANNEL = "lqs_communications_pending"
"""NOTIFY channel: communications were queued for delivery; the dispatcher wakes."""


@dataclass(frozen=True)
class StoredTemplate:
    client_id: UUID
    template_id: str
    version: int
    channel: str
    subject: str | None
    body: str
    body_format: str


async def latest_templates(
    conn: AsyncConnection, client_ids: Iterable[UUID]
) -> dict[tuple[UUID, str], StoredTemplate]:
    """Each client's highest version of every template id it has stored."""
    cur = await conn.execute(
        "SELECT DISTINCT ON (client_id, template_id)"
        " client_id, template_id, version, channel, subject, body, body_format"
        " FROM public.templates WHERE client_id = ANY(%s)"
        " ORDER BY client_id, template_id, version DESC",
        (list(client_ids),),
    )
    return {(row[0], row[1]): StoredTemplate(*row) for row in await cur.fetchall()}


async def store_template(
    conn: AsyncConnection,
    client_id: UUID,
    template_id: str,
    channel: str,
    subject: str | None,
    body: str,
    body_format: str,
) -> int:
    """Store a new version of a client's template; return its version number."""
    cur = await conn.execute(
        "INSERT INTO public.templates"
        " (client_id, template_id, version, channel, subject, body, body_format)"
        " SELECT %(client)s::uuid, %(id)s::text, coalesce(max(version), 0) + 1,"
        " %(channel)s, %(subject)s, %(body)s, %(format)s FROM public.templates"
        " WHERE client_id = %(client)s::uuid AND template_id = %(id)s::text"
        " RETURNING version",
        {
            "client": client_id,
            "id": template_id,
            "channel": channel,
            "subject": subject,
            "body": body,
            "format": body_format,
        },
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def suppressed_recipients(
    conn: AsyncConnection, candidates: Iterable[tuple[UUID, str, str]]
) -> set[tuple[UUID, str, str]]:
    """Which of the (client, channel, normalised recipient) triples are suppressed."""
    triples = list(set(candidates))
    if not triples:
        return set()
    cur = await conn.execute(
        "SELECT s.client_id, s.channel, s.recipient FROM public.suppressions s"
        " JOIN unnest(%s::uuid[], %s::text[], %s::text[]) AS c(client_id, channel, recipient)"
        " USING (client_id, channel, recipient)",
        ([t[0] for t in triples], [t[1] for t in triples], [t[2] for t in triples]),
    )
    return {(row[0], row[1], row[2]) for row in await cur.fetchall()}


@dataclass(frozen=True)
class NewCommunication:
    """A row for the seed's ``communications`` table, as the processor decided it."""

    lead_id: UUID
    client_id: UUID
    type: str
    recipient: str
    subject: str | None
    content: str | None
    status: str
    template_id: str
    template_variables: dict[str, Any]
    priority: int
    campaign_id: str | None
    consent_status: str
    compliance_notes: str | None
    error_message: str | None


_RECORD_COMMUNICATIONS = """
WITH recorded AS (
    INSERT INTO public.communications (
        lead_id, client_id, type, recipient, subject, content, status, template_id,
        template_variables, priority, campaign_id, consent_status, compliance_notes,
        error_message
    )
    SELECT c.lead_id, c.client_id, c.type, c.recipient, c.subject, c.content, c.status,
           c.template_id, c.template_variables, c.priority, c.campaign_id, c.consent_status,
           c.compliance_notes, c.error_message
    FROM jsonb_to_recordset(%(rows)s) AS c(
        lead_id uuid, client_id uuid, type text, recipient text, subject text, content text,
        status text, template_id text, template_variables jsonb, priority integer,
        campaign_id text, consent_status text, compliance_notes text, error_message text
    )
    RETURNING id, client_id, status, priority
)
INSERT INTO public.delivery_queue (communication_id, client_id, priority)
SELECT id, client_id, priority FROM recorded WHERE status = 'pending'
"""


async def record_communications(
    conn: AsyncConnection, communications: Sequence[NewCommunication]
) -> int:
    """Insert the communications and queue the pending ones, in one statement.

    Sends a NOTIFY on :data:`COMMUNICATIONS_PENDING_CHANNEL` (delivered at commit) when
    any was queued. Returns how many were queued for delivery.
    """
    if not communications:
        return 0
    rows = [
        {
            **{k: getattr(c, k) for k in c.__dataclass_fields__},
            "lead_id": str(c.lead_id),
            "client_id": str(c.client_id),
        }
        for c in communications
    ]
    cur = await conn.execute(_RECORD_COMMUNICATIONS, {"rows": Jsonb(rows)})
    queued = cur.rowcount
    if queued:
        await conn.execute("SELECT pg_notify(%s, '')", (COMMUNICATIONS_PENDING_CHANNEL,))
    return queued
