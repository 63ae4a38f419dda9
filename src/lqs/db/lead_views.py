"""SQL for looking at leads: list them, find one by id, id prefix or email, and what one
holds (its communications and consent history). Every statement here only reads.

Like the other listings of the command line, these read across clients on the
administrator's connection; a client is chosen by its id in the query, not by
row-level security.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection, sql
from psycopg.rows import args_row, dict_row


@dataclass(frozen=True)
class LeadFilter:
    """Which leads a listing shows; ``None`` leaves a criterion out."""

    client_id: UUID | None = None
    status: str | None = None
    grade: str | None = None
    since: datetime | None = None
    """Received at or after this moment."""
    search: str | None = None
    """Text found, case-insensitively, in the email, the name or the company (name or
    domain); ``%`` and ``_`` are taken literally."""


@dataclass(frozen=True)
class LeadSummary:
    """A lead as a listing shows it."""

    id: UUID
    received_at: datetime
    client_slug: str
    email: str | None
    name: str | None
    """First and last name, as given."""
    company: str | None
    """The company's name, else its domain."""
    status: str
    score: int | None
    grade: str | None


def like_pattern(text: str) -> str:
    """A ``LIKE`` pattern (escape character ``\\``) matching ``text`` anywhere, its own
    ``%``, ``_`` and ``\\`` taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


LEAD_FILTERS = sql.SQL(r"""
      AND (%(status)s::text IS NULL OR l.status = %(status)s::text)
      AND (%(grade)s::text IS NULL OR l.grade = %(grade)s::text)
      AND (%(since)s::timestamptz IS NULL OR l.received_at >= %(since)s::timestamptz)
      AND (%(pattern)s::text IS NULL
           OR l.email ILIKE %(pattern)s::text ESCAPE '\'
           OR concat_ws(' ', l.first_name, l.last_name) ILIKE %(pattern)s::text ESCAPE '\'
           OR l.company_name ILIKE %(pattern)s::text ESCAPE '\'
           OR l.company_domain ILIKE %(pattern)s::text ESCAPE '\')
""")

# Newest first per client, then merged: each client's part walks its index on
# (client_id, received_at DESC) and stops at the limit, where one ORDER BY over every
# client's leads reads and sorts them all (the newest 50 of 500,000 leads over 3
# clients: 1 ms against 164 ms).
_NEWEST_LEADS = sql.SQL("""
SELECT l.id, l.received_at, k.slug, l.email,
       nullif(concat_ws(' ', l.first_name, l.last_name), ''),
       coalesce(l.company_name, l.company_domain), l.status, l.score, l.grade
FROM public.clients AS k
CROSS JOIN LATERAL (
    SELECT * FROM public.leads AS l
    WHERE l.client_id = k.id {filters}
    ORDER BY l.received_at DESC, l.id DESC
    LIMIT %(limit)s
) AS l
WHERE %(client)s::uuid IS NULL OR k.id = %(client)s::uuid
ORDER BY l.received_at DESC, l.id DESC
LIMIT %(limit)s
""").format(filters=LEAD_FILTERS)

# A search reads every lead in scope whatever the plan (no index serves ILIKE '%...%'):
# one scan, which PostgreSQL may run in parallel, beats one per client (437 ms against
# 813 ms over 500,000 leads).
_SEARCHED_LEADS = sql.SQL("""
SELECT l.id, l.received_at, k.slug, l.email,
       nullif(concat_ws(' ', l.first_name, l.last_name), ''),
       coalesce(l.company_name, l.company_domain), l.status, l.score, l.grade
FROM public.leads AS l JOIN public.clients AS k ON k.id = l.client_id
WHERE (%(client)s::uuid IS NULL OR l.client_id = %(client)s::uuid) {filters}
ORDER BY l.received_at DESC, l.id DESC
LIMIT %(limit)s
""").format(filters=LEAD_FILTERS)


async def list_leads(conn: AsyncConnection, wanted: LeadFilter, limit: int) -> list[LeadSummary]:
    """The newest leads (by the time they were received) that ``wanted`` selects."""
    async with conn.cursor(row_factory=args_row(LeadSummary)) as cur:
        await cur.execute(
            _NEWEST_LEADS if wanted.search is None else _SEARCHED_LEADS,
            {
                "client": wanted.client_id,
                "status": wanted.status,
                "grade": wanted.grade,
                "since": wanted.since,
                "pattern": None if wanted.search is None else like_pattern(wanted.search),
                "limit": limit,
            },
        )
        return await cur.fetchall()


async def grade_given(conn: AsyncConnection, grade: str, client_id: UUID | None) -> bool:
    """Whether any lead (of the client, when given) has this grade."""
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM public.leads WHERE grade = %s"
        " AND (%s::uuid IS NULL OR client_id = %s::uuid))",
        (grade, client_id, client_id),
    )
    row = await cur.fetchone()
    return bool(row and row[0])


@dataclass(frozen=True)
class LeadMatch:
    """A lead an id prefix or an email address found."""

    id: UUID
    client_slug: str
    received_at: datetime


async def leads_with_email(
    conn: AsyncConnection, email: str, client_id: UUID | None, *, limit: int = 50
) -> list[LeadMatch]:
    """The leads (of the client, when given) with this email address, compared
    case-insensitively: newest first. No index serves it (the dedupe key's covers open
    leads only): about 100 ms per 500,000 leads."""
    async with conn.cursor(row_factory=args_row(LeadMatch)) as cur:
        await cur.execute(
            "SELECT l.id, k.slug, l.received_at"
            " FROM public.leads AS l JOIN public.clients AS k ON k.id = l.client_id"
            " WHERE lower(l.email) = lower(%(email)s)"
            "   AND (%(client)s::uuid IS NULL OR l.client_id = %(client)s::uuid)"
            " ORDER BY l.received_at DESC, l.id DESC LIMIT %(limit)s",
            {"email": email.strip(), "client": client_id, "limit": limit},
        )
        return await cur.fetchall()


async def leads_with_ids_between(
    conn: AsyncConnection, low: UUID, high: UUID, client_id: UUID | None, *, limit: int
) -> list[UUID]:
    """Up to ``limit`` lead ids (of the client, when given) from ``low`` to ``high``: the
    ids an id prefix starts (the primary key's index answers)."""
    cur = await conn.execute(
        "SELECT id FROM public.leads WHERE id BETWEEN %s AND %s"
        " AND (%s::uuid IS NULL OR client_id = %s::uuid) ORDER BY id LIMIT %s",
        (low, high, client_id, client_id, limit),
    )
    return [row[0] for row in await cur.fetchall()]


async def get_lead(conn: AsyncConnection, lead_id: UUID) -> dict[str, Any] | None:
    """Every column of the lead, and its client's slug as ``client_slug``."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT l.*, k.slug AS client_slug"
            " FROM public.leads AS l JOIN public.clients AS k ON k.id = l.client_id"
            " WHERE l.id = %s",
            (lead_id,),
        )
        return await cur.fetchone()


@dataclass(frozen=True)
class LeadCommunication:
    """A communication recorded for a lead."""

    id: UUID
    created_at: datetime
    channel: str
    recipient: str
    template_id: str | None
    """The template and the version used: ``name@v3``, ``name@default``."""
    campaign_id: str | None
    status: str
    provider: str | None
    reason: str | None
    """Why it failed (the error) or was rejected (the compliance note)."""


async def lead_communications(conn: AsyncConnection, lead_id: UUID) -> list[LeadCommunication]:
    """The lead's communications, oldest first."""
    async with conn.cursor(row_factory=args_row(LeadCommunication)) as cur:
        await cur.execute(
            "SELECT id, created_at, type, recipient, template_id, campaign_id, status, provider,"
            " coalesce(error_message, compliance_notes)"
            " FROM public.communications WHERE lead_id = %s ORDER BY created_at, id",
            (lead_id,),
        )
        return await cur.fetchall()


@dataclass(frozen=True)
class ConsentEntry:
    """One entry of the append-only consent history, with its proof (proof of consent
    arrived with migration 0019: older entries have none)."""

    id: int
    recorded_at: datetime
    channel: str
    recipient: str
    consent_status: str
    source: str
    communication_id: UUID | None
    text_version: str | None
    text: str | None
    """The consent wording, when the submission sent it rather than its version."""
    captured_at: datetime | None
    ip: str | None
    user_agent: str | None
    api_key_id: UUID | None
    """The API key that submitted the change."""
    api_key_name: str | None
    evidence: dict[str, Any] | None
    """What else proves it: the CSV import and its operator, the provider's event."""


async def lead_consent_history(conn: AsyncConnection, lead_id: UUID) -> list[ConsentEntry]:
    """The consent history of the lead, oldest first: the entries recorded for it, and
    those recorded for its client without a lead (a provider's unsubscribe) on the
    lead's own email address or phone number."""
    async with conn.cursor(row_factory=args_row(ConsentEntry)) as cur:
        await cur.execute(
            "SELECT h.id, h.recorded_at, h.channel, h.recipient, h.consent_status, h.source,"
            " h.communication_id, h.text_version, h.consent_text, h.captured_at, host(h.ip),"
            " h.user_agent, h.api_key_id, k.name, h.evidence"
            " FROM public.leads AS l JOIN public.consent_history AS h"
            "   ON h.lead_id = l.id"
            "   OR (h.lead_id IS NULL AND h.client_id = l.client_id"
            "       AND ((h.channel = 'email' AND h.recipient = lower(l.email))"
            "            OR (h.channel = 'sms' AND h.recipient = l.phone)))"
            " LEFT JOIN public.api_keys AS k ON k.id = h.api_key_id"
            " WHERE l.id = %s ORDER BY h.recorded_at, h.id",
            (lead_id,),
        )
        return await cur.fetchall()
