"""SQL for the tenant read API: leads and communications, a page at a time, and one of each
with everything recorded about it.

Every function here runs on a connection in :func:`~lqs.db.pool.tenant_session`, and
row-level security decides what it sees: no statement here filters by the user's client.
``client_id`` in a filter only narrows further (the service role reads every client's
rows, and may ask for one).

Pages are keyset-paginated (:mod:`lqs.domain.cursor`): a page is the rows strictly after
the cursor's ``(sort key, id)`` in the listing's order, so a row arriving between two
pages neither repeats a row nor hides one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar
from uuid import UUID

from psycopg import AsyncConnection, sql
from psycopg.rows import args_row, dict_row

from lqs.db.communications import (
    DeliveryAttempt,
    ProviderEvent,
    communication_timeline,
    delivery_attempts,
    provider_events,
)
from lqs.db.lead_views import (
    LEAD_FILTERS,
    ConsentEntry,
    LeadCommunication,
    get_lead,
    lead_communications,
    lead_consent_history,
    like_pattern,
)
from lqs.domain.cursor import Cursor, SortKey
from lqs.domain.subject_access import Subject, SubjectRecords

LeadSort = Literal["received", "score"]
NO_SCORE = -(2**31)
"""A lead without a score sorts as this (int4's least value): after every scored lead."""

Row = TypeVar("Row")


@dataclass(frozen=True)
class Page(Generic[Row]):
    """One page of a listing and where the next starts (None: this was the last)."""

    rows: list[Row]
    next_cursor: Cursor | None


# ---------------------------------------------------------------- leads


@dataclass(frozen=True)
class TenantLeadFilter:
    """Which leads a page shows; ``None`` leaves a criterion out."""

    status: str | None = None
    grade: str | None = None
    min_score: int | None = None
    max_score: int | None = None
    source: str | None = None
    campaign: str | None = None
    """The lead's ``utm_campaign``."""
    received_from: datetime | None = None
    """Received at or after this moment."""
    received_to: datetime | None = None
    """Received before this moment."""
    search: str | None = None
    """Text found, case-insensitively, in the email, the name or the company (name or
    domain); ``%`` and ``_`` are taken literally."""
    client_id: UUID | None = None
    """Only this client's leads (narrows what row-level security lets through)."""


@dataclass(frozen=True)
class LeadListing:
    """A lead as a listing shows it."""

    id: UUID
    client_id: UUID
    received_at: datetime
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    company_name: str | None
    company_domain: str | None
    job_title: str | None
    country: str | None
    source: str | None
    campaign: str | None
    status: str
    score: int | None
    grade: str | None
    consent_status: str
    processed_at: datetime | None


# The score order's key, written exactly as idx_leads_client_score (migration 0013) indexes
# it, so that the index serves the ORDER BY and the keyset condition. CASE, not coalesce:
# under row-level security a condition is only checked before the policy (here: as an
# index condition) when PostgreSQL knows it cannot leak, and it assumes coalesce can.
_SCORE_KEY = sql.SQL("(CASE WHEN l.score IS NULL THEN -2147483648 ELSE l.score END)")
_LEAD_ORDER: dict[LeadSort, tuple[sql.Composable, sql.Composable, str]] = {
    # (the sort key, as selected and compared; the ORDER BY; the key's type)
    "received": (
        sql.SQL("l.received_at"),
        sql.SQL("l.received_at DESC, l.id DESC"),
        "timestamptz",
    ),
    "score": (_SCORE_KEY, sql.SQL("{} DESC, l.id DESC").format(_SCORE_KEY), "int"),
}

_LEADS_PAGE = sql.SQL("""
SELECT l.id, l.client_id, l.received_at, l.email, l.phone, l.first_name, l.last_name,
       l.company_name, l.company_domain, l.job_title, l.country, l.source, l.utm_campaign,
       l.status, l.score, l.grade, l.consent_status, l.processed_at
FROM public.leads AS l
WHERE {client}
  AND (%(min_score)s::int IS NULL OR l.score >= %(min_score)s::int)
  AND (%(max_score)s::int IS NULL OR l.score <= %(max_score)s::int)
  AND (%(source)s::text IS NULL OR l.source = %(source)s::text)
  AND (%(campaign)s::text IS NULL OR l.utm_campaign = %(campaign)s::text)
  AND (%(until)s::timestamptz IS NULL OR l.received_at < %(until)s::timestamptz)
  {filters} {after}
ORDER BY {order}
LIMIT %(limit)s
""")


def _client(alias: str, client_id: UUID | None) -> sql.Composable:
    """The client condition, written only when there is one: a prepared statement's generic
    plan for ``(%s IS NULL OR client_id = %s)`` cannot walk the client's index."""
    if client_id is None:
        return sql.SQL("true")
    return sql.SQL("{alias}.client_id = %(client)s::uuid").format(alias=sql.SQL(alias))


def _after(key: sql.Composable, cursor: Cursor | None, cast: str, alias: str) -> sql.Composable:
    """The keyset condition: rows strictly after the cursor in descending order.

    Spelled ``key <= k AND (key < k OR id < i)`` rather than ``(key, id) < (k, i)``: the
    first part is a plain index condition, so a deep page starts where the index reaches
    ``k``; the row comparison was not used on the score's expression index (measured:
    every skipped row read and filtered out).
    """
    if cursor is None:
        return sql.SQL("")
    return sql.SQL(
        "AND {key} <= %(after_key)s::{cast}"
        " AND ({key} < %(after_key)s::{cast} OR {alias}.id < %(after_id)s::uuid)"
    ).format(key=key, alias=sql.SQL(alias), cast=sql.SQL(cast))


def _paged(
    rows: list[Row],
    limit: int,
    sort: str,
    key: Callable[[Row], SortKey],
    last_id: Callable[[Row], UUID],
) -> Page[Row]:
    """The first ``limit`` rows, and a cursor after the last of them when more were found."""
    if len(rows) <= limit:
        return Page(rows, None)
    shown = rows[:limit]
    return Page(shown, Cursor(sort, key(shown[-1]), last_id(shown[-1])))


async def leads_page(
    conn: AsyncConnection,
    wanted: TenantLeadFilter,
    *,
    sort: LeadSort = "received",
    limit: int = 50,
    after: Cursor | None = None,
) -> Page[LeadListing]:
    """The leads ``wanted`` selects, newest received first (or highest score first),
    ``limit`` at a time, after ``after`` (a cursor of the same ``sort``)."""
    key, order, cast = _LEAD_ORDER[sort]
    query = _LEADS_PAGE.format(
        client=_client("l", wanted.client_id),
        filters=LEAD_FILTERS,
        after=_after(key, after, cast, "l"),
        order=order,
    )
    async with conn.cursor(row_factory=args_row(LeadListing)) as cur:
        await cur.execute(
            query,
            {
                "client": wanted.client_id,
                "status": wanted.status,
                "grade": wanted.grade,
                "min_score": wanted.min_score,
                "max_score": wanted.max_score,
                "source": wanted.source,
                "campaign": wanted.campaign,
                "since": wanted.received_from,
                "until": wanted.received_to,
                "pattern": None if wanted.search is None else like_pattern(wanted.search),
                "after_key": None if after is None else after.key,
                "after_id": None if after is None else after.last_id,
                "limit": limit + 1,
            },
        )
        rows = await cur.fetchall()

    def sort_key(lead: LeadListing) -> SortKey:
        if sort == "received":
            return lead.received_at
        return NO_SCORE if lead.score is None else lead.score

    return _paged(rows, limit, sort, sort_key, lambda lead: lead.id)


@dataclass(frozen=True)
class LeadEvent:
    """One moment of a lead's timeline."""

    at: datetime
    kind: str
    """``received``, ``merged``, ``scored``, ``communication`` (created), ``attempt``,
    ``event`` (a provider's delivery event) or ``consent``."""
    summary: str
    communication_id: UUID | None = None


@dataclass(frozen=True)
class LeadDetail:
    """A lead with everything recorded about it."""

    lead: dict[str, Any]
    """Every column of the lead, and ``client_slug``."""
    communications: list[LeadCommunication]
    consent_history: list[ConsentEntry]
    timeline: list[LeadEvent]
    """Oldest first."""


def _lead_events(lead: dict[str, Any], consent: Sequence[ConsentEntry]) -> list[LeadEvent]:
    events = [LeadEvent(lead["received_at"], "received", f"received from {lead['source'] or '?'}")]
    for merge in lead.get("history") or []:
        merged_at = merge.get("merged_at") if isinstance(merge, dict) else None
        if isinstance(merged_at, str):
            events.append(
                LeadEvent(
                    datetime.fromisoformat(merged_at),
                    "merged",
                    f"submitted again from {merge.get('source') or '?'}",
                )
            )
    if lead["processed_at"] is not None and lead["status"] != "queued":
        text = f"scored {lead['score']} ({lead['grade']}): {lead['status']}"
        if lead["status"] == "error":
            text = f"processing failed: {lead['error_message']}"
        events.append(LeadEvent(lead["processed_at"], "scored", text))
    for entry in consent:
        events.append(
            LeadEvent(
                entry.recorded_at,
                "consent",
                f"{entry.channel} consent {entry.consent_status} ({entry.source})",
                entry.communication_id,
            )
        )
    return events


async def lead_consent(conn: AsyncConnection, lead_id: UUID) -> list[ConsentEntry] | None:
    """The lead's consent history with its proof, oldest first; None when there is no
    such lead, or it is not the user's to see (row-level security)."""
    if await get_lead(conn, lead_id) is None:
        return None
    return await lead_consent_history(conn, lead_id)


async def lead_detail(conn: AsyncConnection, lead_id: UUID) -> LeadDetail | None:
    """The lead, its communications, its consent history and its timeline (received,
    scored, each communication's creation, attempts and delivery events, consent
    changes); None when there is no such lead, or it is not the user's to see."""
    lead = await get_lead(conn, lead_id)
    if lead is None:
        return None
    communications = await lead_communications(conn, lead_id)
    consent = await lead_consent_history(conn, lead_id)
    timeline = _lead_events(lead, consent)
    for communication in communications:
        found = await communication_timeline(conn, communication.id)
        if found is None:  # deleted since it was listed
            continue
        for entry in found[1]:
            kind = "communication" if entry.kind == "created" else entry.kind
            summary = entry.summary
            if entry.kind == "created":
                summary = f"{communication.channel} to {communication.recipient} created"
            timeline.append(LeadEvent(entry.at, kind, summary, communication.id))
    timeline.sort(key=lambda event: event.at)
    return LeadDetail(lead, communications, consent, timeline)


# ---------------------------------------------------------------- communications


@dataclass(frozen=True)
class TenantCommunicationFilter:
    """Which communications a page shows; ``None`` leaves a criterion out."""

    channel: str | None = None
    """The seed's ``type`` column."""
    status: str | None = None
    provider: str | None = None
    campaign_id: str | None = None
    template_id: str | None = None
    """A template's name (any version: ``lead_qualified``) or one version
    (``lead_qualified@v3``)."""
    recipient: str | None = None
    """Compared case-insensitively."""
    created_from: datetime | None = None
    created_to: datetime | None = None
    """Created before this moment."""
    lead_id: UUID | None = None
    client_id: UUID | None = None
    """Only this client's communications (narrows what row-level security lets through)."""


@dataclass(frozen=True)
class CommunicationListing:
    """A communication as a listing shows it."""

    id: UUID
    client_id: UUID
    lead_id: UUID
    channel: str
    recipient: str
    subject: str | None
    status: str
    provider: str | None
    template_id: str | None
    campaign_id: str | None
    retry_count: int
    reason: str | None
    """Why it failed (the error) or was rejected (the compliance note)."""
    created_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None


# created_at has the seed's default and LQS never writes NULL there; a NULL would sort
# first and end the pagination after it.
_COMMUNICATIONS_PAGE = sql.SQL("""
SELECT c.id, c.client_id, c.lead_id, c.type, c.recipient, c.subject, c.status, c.provider,
       c.template_id, c.campaign_id, coalesce(c.retry_count, 0),
       coalesce(c.error_message, c.compliance_notes), c.created_at, c.sent_at, c.delivered_at
FROM public.communications AS c
WHERE {client}
  AND (%(lead)s::uuid IS NULL OR c.lead_id = %(lead)s::uuid)
  AND (%(channel)s::text IS NULL OR c.type = %(channel)s::text)
  AND (%(status)s::text IS NULL OR c.status = %(status)s::text)
  AND (%(provider)s::text IS NULL OR c.provider = %(provider)s::text)
  AND (%(campaign)s::text IS NULL OR c.campaign_id = %(campaign)s::text)
  AND (%(template)s::text IS NULL OR c.template_id = %(template)s::text
       OR split_part(c.template_id, '@', 1) = %(template)s::text)
  AND (%(recipient)s::text IS NULL OR lower(c.recipient) = lower(%(recipient)s::text))
  AND (%(since)s::timestamptz IS NULL OR c.created_at >= %(since)s::timestamptz)
  AND (%(until)s::timestamptz IS NULL OR c.created_at < %(until)s::timestamptz)
  {after}
ORDER BY c.created_at DESC, c.id DESC
LIMIT %(limit)s
""")


async def communications_page(
    conn: AsyncConnection,
    wanted: TenantCommunicationFilter,
    *,
    limit: int = 50,
    after: Cursor | None = None,
) -> Page[CommunicationListing]:
    """The communications ``wanted`` selects, newest first, ``limit`` at a time, after
    ``after`` (a cursor of sort ``created``)."""
    query = _COMMUNICATIONS_PAGE.format(
        client=_client("c", wanted.client_id),
        after=_after(sql.SQL("c.created_at"), after, "timestamptz", "c"),
    )
    async with conn.cursor(row_factory=args_row(CommunicationListing)) as cur:
        await cur.execute(
            query,
            {
                "client": wanted.client_id,
                "lead": wanted.lead_id,
                "channel": wanted.channel,
                "status": wanted.status,
                "provider": wanted.provider,
                "campaign": wanted.campaign_id,
                "template": wanted.template_id,
                "recipient": wanted.recipient,
                "since": wanted.created_from,
                "until": wanted.created_to,
                "after_key": None if after is None else after.key,
                "after_id": None if after is None else after.last_id,
                "limit": limit + 1,
            },
        )
        rows = await cur.fetchall()
    return _paged(rows, limit, "created", lambda c: c.created_at, lambda c: c.id)


@dataclass(frozen=True)
class CommunicationDetail:
    """A communication with what was sent, every attempt and every provider event."""

    communication: dict[str, Any]
    """Its stored columns (content included), the lead's ``lead_email`` and
    ``lead_name``."""
    attempts: list[DeliveryAttempt]
    events: list[ProviderEvent]


async def communication_detail(
    conn: AsyncConnection, communication_id: UUID
) -> CommunicationDetail | None:
    """The communication, its attempts and its provider events; None when there is no
    such communication, or it is not the user's to see."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT c.id, c.client_id, c.lead_id, c.type AS channel, c.recipient, c.subject,"
            " c.content, c.status, c.provider, c.external_id, c.error_message,"
            " coalesce(c.retry_count, 0) AS retry_count, c.max_retries, c.created_at,"
            " c.sent_at, c.delivered_at, c.updated_at, c.template_id, c.template_variables,"
            " c.campaign_id, c.priority, c.consent_status, c.compliance_notes,"
            " l.email AS lead_email,"
            " nullif(concat_ws(' ', l.first_name, l.last_name), '') AS lead_name"
            " FROM public.communications AS c LEFT JOIN public.leads AS l ON l.id = c.lead_id"
            " WHERE c.id = %s",
            (communication_id,),
        )
        row = await cur.fetchone()
    if row is None:
        return None
    return CommunicationDetail(
        row,
        await delivery_attempts(conn, communication_id),
        await provider_events(conn, communication_id),
    )


# ---------------------------------------------------------------- subject access

# Each list is the rows as JSON (every column: to_jsonb), oldest first. The person's leads
# are found by address; the rest hang off those leads, or name the same address.
_SUBJECT_LEADS = """
SELECT coalesce(jsonb_agg(to_jsonb(l) ORDER BY l.received_at, l.id), '[]')
FROM public.leads AS l
WHERE l.client_id = %(client)s
  AND (lower(l.email) = %(email)s::text OR l.phone = %(phone)s::text)
"""
_SUBJECT_COMMUNICATIONS = """
SELECT coalesce(jsonb_agg(to_jsonb(c) ORDER BY c.created_at, c.id), '[]')
FROM public.communications AS c WHERE c.lead_id = ANY(%(leads)s::uuid[])
"""
_SUBJECT_ATTEMPTS = """
SELECT coalesce(jsonb_agg(to_jsonb(a) ORDER BY a.started_at, a.id), '[]')
FROM public.delivery_attempts AS a WHERE a.communication_id = ANY(%(communications)s::uuid[])
"""
_SUBJECT_EVENTS = """
SELECT coalesce(jsonb_agg(to_jsonb(e) ORDER BY e.received_at, e.id), '[]')
FROM public.provider_events AS e
WHERE e.communication_id = ANY(%(communications)s::uuid[])
   OR (e.client_id = %(client)s AND e.communication_id IS NULL
       AND (lower(e.recipient) = ANY(%(addresses)s::text[])
            -- not applied yet, naming one of the messages by our id
            OR e.named_communication_id = ANY(%(communications)s::uuid[])))
"""
_SUBJECT_CONSENT = """
SELECT coalesce(jsonb_agg(to_jsonb(h) ORDER BY h.recorded_at, h.id), '[]')
FROM public.consent_history AS h
WHERE h.lead_id = ANY(%(leads)s::uuid[])
   OR (h.lead_id IS NULL AND h.client_id = %(client)s
       AND h.recipient = ANY(%(addresses)s::text[]))
"""
_SUBJECT_SUPPRESSIONS = """
SELECT coalesce(jsonb_agg(to_jsonb(s) ORDER BY s.created_at, s.id), '[]')
FROM public.suppressions AS s
WHERE s.client_id = %(client)s AND s.recipient = ANY(%(addresses)s::text[])
"""
_SUBJECT_AUDIT = """
SELECT coalesce(jsonb_agg(to_jsonb(g) ORDER BY g.created_at, g.id), '[]')
FROM public.audit_log AS g
WHERE g.client_id = %(client)s
  AND g.target_id = ANY(%(leads)s::uuid[] || %(communications)s::uuid[])
"""


async def _json_list(conn: AsyncConnection, query: str, params: dict[str, Any]) -> list[Any]:
    cur = await conn.execute(query.encode(), params)
    row = await cur.fetchone()
    return list(row[0]) if row is not None else []


async def subject_records(
    conn: AsyncConnection, client_id: UUID, subject: Subject
) -> SubjectRecords:
    """Every row of the client's (as far as row-level security shows them) held on the
    person: their leads (by email, case-insensitively, or phone), those leads'
    communications with their delivery attempts and provider events, provider events
    not matched to a message that name one of the addresses, the consent history of the
    leads and of the addresses, the addresses' suppressions, and audit entries about the
    leads or messages. The service's own bookkeeping is
    :func:`lqs.db.subject_access.subject_bookkeeping`'s; here its lists are empty."""
    params: dict[str, Any] = {
        "client": client_id,
        "email": subject.email,
        "phone": subject.phone,
        "addresses": subject.addresses,
    }
    leads = await _json_list(conn, _SUBJECT_LEADS, params)
    params["leads"] = [lead["id"] for lead in leads]
    communications = await _json_list(conn, _SUBJECT_COMMUNICATIONS, params)
    params["communications"] = [c["id"] for c in communications]
    return SubjectRecords(
        leads=leads,
        communications=communications,
        delivery_attempts=await _json_list(conn, _SUBJECT_ATTEMPTS, params),
        provider_events=await _json_list(conn, _SUBJECT_EVENTS, params),
        consent_history=await _json_list(conn, _SUBJECT_CONSENT, params),
        suppressions=await _json_list(conn, _SUBJECT_SUPPRESSIONS, params),
        audit_log=await _json_list(conn, _SUBJECT_AUDIT, params),
        idempotency_records=[],
        lead_import_rows=[],
        recipient_sends=[],
    )
