"""The tenant read API: a client's users read their leads and communications.

``GET /v1/leads``, ``/v1/leads/{id}``, ``/v1/communications``, ``/v1/communications/{id}``
and the CSV exports ``/v1/leads.csv`` and ``/v1/communications.csv``, all with a user's
token (``Authorization: Bearer <jwt>``, :data:`~lqs.api.deps.User`). Every read runs as
that user in the database, so row-level security decides what is visible: another
client's lead is answered exactly as one that does not exist, 404. (``POST /v1/leads``
shares the path and takes an API key: :mod:`lqs.api.intake`.)

Listings answer ``{"data": [...], "next_cursor": "..." | null}``; pass ``next_cursor`` back
as ``cursor`` for the next page. A parameter of the wrong kind is a 422 naming it, a
cursor this service did not make a 400 naming ``cursor``; a signed-in user who belongs to
no client (no profile) is a 403 ``no_profile`` on the listings and exports.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from lqs.api.deps import CurrentUser, Pool, User, UserSession, session_as
from lqs.api.errors import ERROR_SCHEMA, ApiError
from lqs.api.read_filters import (
    CommunicationQuery,
    LeadQuery,
    communication_filter,
    lead_filter,
    page_cursor,
)
from lqs.api.tenant_actions import member
from lqs.api.tokens import Claims
from lqs.db.tenant_reads import (
    CommunicationListing,
    LeadListing,
    LeadSort,
    Page,
    TenantCommunicationFilter,
    TenantLeadFilter,
    communication_detail,
    communications_page,
    lead_consent,
    lead_detail,
    leads_page,
)
from lqs.domain.csv_text import neutralise_formula
from lqs.domain.cursor import Cursor, encode_cursor

router = APIRouter(tags=["tenant"])

_SECURED: dict[str, Any] = {"security": [{"userToken": []}]}

MAX_PAGE = 200
DEFAULT_PAGE = 50
EXPORT_PAGE = 500
"""Rows read per statement while a CSV export streams."""

# ---------------------------------------------------------------- OpenAPI


def _error(text: str) -> dict[str, Any]:
    return {"description": text, "content": {"application/json": {"schema": ERROR_SCHEMA}}}


_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _error("Missing, malformed, forged or expired token, or an API key"),
    503: _error("Tokens cannot be verified here (no LQS_JWT_SECRET or LQS_JWKS_URL)"),
}
_LIST_ERRORS = {
    **_AUTH_ERRORS,
    400: _error("A cursor this service did not make, or contradictory filters"),
    403: _error("A signed-in user who belongs to no client (`no_profile`)"),
    422: _error("A parameter of the wrong kind; `field` names it"),
}
_DETAIL_ERRORS = {**_AUTH_ERRORS, 404: _error("No such id, or not the user's to see")}

_LEAD_EXAMPLE = {
    "id": "5b0c1f9e-3d0a-4e59-9c51-0c2a4b1f7e21",
    "client_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
    "received_at": "2026-12-01T09:30:00.123456+00:00",
    "email": "ann.lee@corp.example",
    "phone": None,
    "first_name": "Ann",
    "last_name": "Lee",
    "company_name": "Corp",
    "company_domain": "corp.example",
    "job_title": "CTO",
    "country": "US",
    "source": "website",
    "campaign": "winter-launch",
    "status": "qualified",
    "score": 65,
    "grade": "B",
    "consent_status": "granted",
    "processed_at": "2026-12-01T09:30:01.5+00:00",
}
_COMMUNICATION_EXAMPLE = {
    "id": "8d3f3c0e-2b1a-4c8e-9f5e-1a2b3c4d5e6f",
    "client_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
    "lead_id": "5b0c1f9e-3d0a-4e59-9c51-0c2a4b1f7e21",
    "channel": "email",
    "recipient": "sales@client.example",
    "subject": "New qualified lead: Ann Lee",
    "status": "delivered",
    "provider": "resend",
    "template_id": "lead_qualified@v2",
    "campaign_id": None,
    "retry_count": 0,
    "reason": None,
    "created_at": "2026-12-01T09:30:01.6+00:00",
    "sent_at": "2026-12-01T09:30:02.1+00:00",
    "delivered_at": "2026-12-01T09:30:04+00:00",
}
_NEXT = "eyJ2IjoxLCJzIjoicmVjZWl2ZWQiLCJrIjoiMjAyNi0xMi0wMVQwOTozMDowMCswMDowMCIsImkiOiI1YjBjIn0"


def _ok(example: Any) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": "OK", "content": {"application/json": {"example": example}}}}


def _csv_ok(header: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": "CSV, streamed", "content": {"text/csv": {"example": header}}}}


# ---------------------------------------------------------------- parameters


def _lead_filter(query: Annotated[LeadQuery, Query()]) -> TenantLeadFilter:
    return lead_filter(query)


def _communication_filter(
    query: Annotated[CommunicationQuery, Query()],
) -> TenantCommunicationFilter:
    return communication_filter(query)


LeadFilterParams = Annotated[TenantLeadFilter, Depends(_lead_filter)]
CommunicationFilterParams = Annotated[TenantCommunicationFilter, Depends(_communication_filter)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Rows per page")]
CursorText = Annotated[
    str | None, Query(min_length=1, description="The previous page's next_cursor")
]
SortParam = Annotated[
    Literal["received", "score"],
    Query(description="received: newest first; score: highest first, unscored last"),
]


async def _own_client_id(conn: AsyncConnection, user: Claims) -> UUID | None:
    """A signed-in user's client (their profile), so listings walk that client's indexes
    (row-level security alone decides what is visible; this only spares reading the rest).
    None for the service role, which reads every client's rows.

    Raises:
        ApiError: 403 ``no_profile``, a signed-in user who belongs to no client: the
            policies would show them nothing, but only after reading every client's rows.
    """
    if user.role != "authenticated":
        return None
    return (await member(conn)).client_id


async def _narrowed_to_own_client(user: User, conn: UserSession) -> UUID | None:
    return await _own_client_id(conn, user)


OwnClient = Annotated[UUID | None, Depends(_narrowed_to_own_client)]


def _id(text: str, what: str) -> UUID:
    """The path's id; one that is not a UUID names nothing, as an unknown one."""
    try:
        return UUID(text)
    except ValueError:
        raise _not_found(what) from None


def _not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"no {what} with this id")


def _listing(page: Page[Any]) -> dict[str, Any]:
    return {
        "data": [dataclasses.asdict(row) for row in page.rows],
        "next_cursor": None if page.next_cursor is None else encode_cursor(page.next_cursor),
    }


# ---------------------------------------------------------------- leads


@router.get(
    "/v1/leads",
    responses={**_ok({"data": [_LEAD_EXAMPLE], "next_cursor": _NEXT}), **_LIST_ERRORS},
    openapi_extra=_SECURED,
)
async def list_leads(
    conn: UserSession,
    own: OwnClient,
    wanted: LeadFilterParams,
    sort: SortParam = "received",
    limit: Limit = DEFAULT_PAGE,
    cursor: CursorText = None,
) -> dict[str, Any]:
    """The user's leads, a page at a time, newest received first (or highest score first)."""
    after = page_cursor(cursor, sort, datetime if sort == "received" else int)
    wanted = dataclasses.replace(wanted, client_id=own)
    return _listing(await leads_page(conn, wanted, sort=sort, limit=limit, after=after))


_HIDDEN_LEAD_COLUMNS = frozenset({"dedupe_key", "history", "score_breakdown", "utm_campaign"})


@router.get(
    "/v1/leads/{lead_id}",
    responses={
        **_ok(
            {
                "data": {
                    **_LEAD_EXAMPLE,
                    "breakdown": [
                        {
                            "rule_id": "work_email",
                            "field": "email",
                            "value": "ann.lee@corp.example",
                            "points": 20,
                            "reason": "email domain is a company's own",
                        }
                    ],
                    "communications": [],
                    "consent_history": [],
                    "timeline": [
                        {
                            "at": "2026-12-01T09:30:00.123456+00:00",
                            "kind": "received",
                            "summary": "received from website",
                            "communication_id": None,
                        }
                    ],
                }
            }
        ),
        **_DETAIL_ERRORS,
    },
    openapi_extra=_SECURED,
)
async def get_lead(conn: UserSession, lead_id: str) -> dict[str, Any]:
    """One lead: its fields, score and breakdown (each matched rule's reason), its
    communications, its consent history and a timeline of everything, oldest first."""
    found = await lead_detail(conn, _id(lead_id, "lead"))
    if found is None:
        raise _not_found("lead")
    lead = {k: v for k, v in found.lead.items() if k not in _HIDDEN_LEAD_COLUMNS}
    lead["campaign"] = found.lead["utm_campaign"]
    lead["breakdown"] = found.lead["score_breakdown"] or []
    lead["communications"] = [dataclasses.asdict(c) for c in found.communications]
    lead["consent_history"] = [dataclasses.asdict(c) for c in found.consent_history]
    lead["timeline"] = [dataclasses.asdict(e) for e in found.timeline]
    return {"data": lead}


_CONSENT_EXAMPLE = {
    "id": 1234,
    "recorded_at": "2026-12-01T09:30:00.123456+00:00",
    "channel": "email",
    "recipient": "ann.lee@corp.example",
    "consent_status": "granted",
    "source": "pricing page form",
    "communication_id": None,
    "text_version": "newsletter-v3",
    "text": None,
    "captured_at": "2026-12-01T09:29:41+00:00",
    "ip": "203.0.113.7",
    "user_agent": "Mozilla/5.0",
    "api_key_id": "6f1c0d2e-8b5a-4f3e-9a41-2c7d9e0b1a55",
    "api_key_name": "website forms",
    "evidence": None,
}


@router.get(
    "/v1/leads/{lead_id}/consent",
    responses={**_ok({"data": [_CONSENT_EXAMPLE]}), **_DETAIL_ERRORS},
    openapi_extra=_SECURED,
)
async def get_lead_consent(conn: UserSession, lead_id: str) -> dict[str, Any]:
    """The lead's consent history, oldest first, with the proof of each change: the
    consent record submitted (wording or its version, capture time, IP address, user
    agent), the API key that submitted it, or what else proves it (a CSV import, a
    provider's unsubscribe or complaint event)."""
    found = await lead_consent(conn, _id(lead_id, "lead"))
    if found is None:
        raise _not_found("lead")
    return {"data": [dataclasses.asdict(entry) for entry in found]}


# ---------------------------------------------------------------- communications


@router.get(
    "/v1/communications",
    responses={**_ok({"data": [_COMMUNICATION_EXAMPLE], "next_cursor": None}), **_LIST_ERRORS},
    openapi_extra=_SECURED,
)
async def list_communications(
    conn: UserSession,
    own: OwnClient,
    wanted: CommunicationFilterParams,
    limit: Limit = DEFAULT_PAGE,
    cursor: CursorText = None,
) -> dict[str, Any]:
    """The user's communications, a page at a time, newest first."""
    after = page_cursor(cursor, "created", datetime)
    wanted = dataclasses.replace(wanted, client_id=own)
    return _listing(await communications_page(conn, wanted, limit=limit, after=after))


@router.get(
    "/v1/communications/{communication_id}",
    responses={
        **_ok(
            {
                "data": {
                    **_COMMUNICATION_EXAMPLE,
                    "content": "<p>Ann Lee from Corp scored 65 (B).</p>",
                    "lead": {
                        "id": _COMMUNICATION_EXAMPLE["lead_id"],
                        "name": "Ann Lee",
                        "email": "ann.lee@corp.example",
                    },
                    "attempts": [
                        {
                            "attempt": 1,
                            "provider": "resend",
                            "started_at": "2026-12-01T09:30:02+00:00",
                            "finished_at": "2026-12-01T09:30:02.1+00:00",
                            "outcome": "accepted",
                            "http_status": 200,
                            "error_code": None,
                            "error_message": None,
                            "latency_ms": 98.5,
                            "recorded": True,
                        }
                    ],
                    "events": [
                        {
                            "provider": "resend",
                            "event_type": "email.delivered",
                            "event_id": "evt_1",
                            "kind": "delivered",
                            "occurred_at": "2026-12-01T09:30:04+00:00",
                            "received_at": "2026-12-01T09:30:04.2+00:00",
                            "effect": "delivered",
                        }
                    ],
                }
            }
        ),
        **_DETAIL_ERRORS,
    },
    openapi_extra=_SECURED,
)
async def get_communication(conn: UserSession, communication_id: str) -> dict[str, Any]:
    """One communication: what was sent (subject, content), every delivery attempt
    (outcome, latency, error), every provider event, and its lead."""
    found = await communication_detail(conn, _id(communication_id, "communication"))
    if found is None:
        raise _not_found("communication")
    row = dict(found.communication)
    lead = {"id": row["lead_id"], "name": row.pop("lead_name"), "email": row.pop("lead_email")}
    return {
        "data": {
            **row,
            "lead": lead,
            "attempts": [dataclasses.asdict(a) for a in found.attempts],
            "events": [dataclasses.asdict(e) for e in found.events],
        }
    }


# ---------------------------------------------------------------- CSV exports


def _cell(value: Any) -> Any:
    """A value as a CSV cell: numbers as they are, anything else as formula-safe text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return neutralise_formula(str(value))


def _csv_line(cells: Sequence[Any]) -> str:
    out = io.StringIO()
    # Every text cell quoted (OWASP: a separator inside must not split it).
    csv.writer(out, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\r\n").writerow(
        [_cell(c) for c in cells]
    )
    return out.getvalue()


async def _export_client(pool: AsyncConnectionPool, user: Claims) -> UUID | None:
    """:func:`_own_client_id`, in a transaction of its own, before an export streams (so
    a refusal is still an error response, not a broken download).

    Raises:
        ApiError: 403 ``no_profile``.
    """
    async with session_as(pool, user) as conn:
        return await _own_client_id(conn, user)


async def _csv_rows(
    pool: AsyncConnectionPool,
    user: Claims,
    own: UUID | None,
    columns: Sequence[str],
    read: Callable[[AsyncConnection, UUID | None, Cursor | None], Any],
) -> AsyncIterator[str]:
    """The header, then every row ``read`` pages through. Each page is read in a short
    transaction of its own, run as the user, and the connection goes back to the pool
    before the page is sent: a slow reader holds no connection (intake shares the pool).
    The keyset cursor carries the export from one page to the next; rows written while
    it runs may or may not be in it."""
    yield _csv_line(columns)
    after: Cursor | None = None
    while True:
        async with session_as(pool, user) as conn:
            page = await read(conn, own, after)
        yield "".join(_csv_line(dataclasses.astuple(row)) for row in page.rows)
        if page.next_cursor is None:
            return
        after = page.next_cursor


def _csv_response(rows: AsyncIterator[str], name: str) -> StreamingResponse:
    return StreamingResponse(
        rows,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


_LEAD_COLUMNS = [f.name for f in dataclasses.fields(LeadListing)]
_COMMUNICATION_COLUMNS = [f.name for f in dataclasses.fields(CommunicationListing)]


@router.get(
    "/v1/leads.csv",
    response_class=StreamingResponse,
    responses={**_csv_ok(",".join(_LEAD_COLUMNS)), **_LIST_ERRORS},
    openapi_extra=_SECURED,
)
async def export_leads(
    user: CurrentUser, pool: Pool, wanted: LeadFilterParams, sort: SortParam = "received"
) -> StreamingResponse:
    """Every lead the filters of ``GET /v1/leads`` select, as CSV (streamed). Cells that
    start like a spreadsheet formula (``= + - @``, tab) are prefixed with ``'``."""
    order: LeadSort = sort

    async def read(
        conn: AsyncConnection, own: UUID | None, after: Cursor | None
    ) -> Page[LeadListing]:
        narrowed = dataclasses.replace(wanted, client_id=own)
        return await leads_page(conn, narrowed, sort=order, limit=EXPORT_PAGE, after=after)

    own = await _export_client(pool, user)
    return _csv_response(_csv_rows(pool, user, own, _LEAD_COLUMNS, read), "leads.csv")


@router.get(
    "/v1/communications.csv",
    response_class=StreamingResponse,
    responses={**_csv_ok(",".join(_COMMUNICATION_COLUMNS)), **_LIST_ERRORS},
    openapi_extra=_SECURED,
)
async def export_communications(
    user: CurrentUser, pool: Pool, wanted: CommunicationFilterParams
) -> StreamingResponse:
    """Every communication the filters of ``GET /v1/communications`` select, as CSV
    (streamed), formula-safe as the leads' export."""

    async def read(
        conn: AsyncConnection, own: UUID | None, after: Cursor | None
    ) -> Page[CommunicationListing]:
        narrowed = dataclasses.replace(wanted, client_id=own)
        return await communications_page(conn, narrowed, limit=EXPORT_PAGE, after=after)

    own = await _export_client(pool, user)
    rows = _csv_rows(pool, user, own, _COMMUNICATION_COLUMNS, read)
    return _csv_response(rows, "communications.csv")
