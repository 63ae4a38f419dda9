"""SQL for the outbox side of qualification: templates, suppressions, communications.

A communication is recorded (``pending``, ``rejected`` or ``failed``) in the seed's table
in the same statement that queues the pending ones for delivery.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

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
    to_lead: bool = False
    """The message goes to the lead: its consent is checked again before sending."""


_COMMUNICATION_COLUMNS = (
    "id, lead_id, client_id, type, recipient, subject, content, status, template_id,"
    " template_variables, priority, campaign_id, consent_status, compliance_notes,"
    " error_message"
)


async def record_communications(
    conn: AsyncConnection, communications: Sequence[NewCommunication]
) -> int:
    """Insert the communications and queue the pending ones for delivery.

    Both tables are written with ``COPY`` (ids are made here, so the queue rows need no
    round trip back): measured at a third of the cost of ``INSERT ... SELECT`` from a jsonb
    parameter. Sends a NOTIFY on :data:`COMMUNICATIONS_PENDING_CHANNEL` (delivered at
    commit) when any was queued. Must run inside the caller's transaction. Returns how many
    were queued for delivery.
    """
    if not communications:
        return 0
    queue: list[tuple[UUID, UUID, int, bool]] = []
    async with conn.cursor() as cur:
        async with cur.copy(
            "COPY public.communications (" + _COMMUNICATION_COLUMNS + ") FROM STDIN"
        ) as copy:
            for c in communications:
                communication_id = uuid4()
                await copy.write_row(
                    (
                        communication_id, c.lead_id, c.client_id, c.type, c.recipient,
                        c.subject, c.content, c.status, c.template_id,
                        Jsonb(c.template_variables), c.priority, c.campaign_id,
                        c.consent_status, c.compliance_notes, c.error_message,
                    )
                )  # fmt: skip
                if c.status == "pending":
                    queue.append((communication_id, c.client_id, c.priority, c.to_lead))
        if queue:
            async with cur.copy(
                "COPY public.delivery_queue (communication_id, client_id, priority, to_lead)"
                " FROM STDIN"
            ) as copy:
                for row in queue:
                    await copy.write_row(row)
    if queue:
        await conn.execute("SELECT pg_notify(%s, '')", (COMMUNICATIONS_PENDING_CHANNEL,))
    return len(queue)
