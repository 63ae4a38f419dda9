"""The tenant API's statistics, suppressions, admin actions and rules tester, for a
client's signed-in users (``Authorization: Bearer <jwt>``).

Every request runs in the database as its user (:data:`~lqs.api.deps.UserSession`), so
row-level security decides what exists: another client's id is a 404, never a 403. Who the
user is in their client comes from their own profile, read the same way. Admin actions
(owners and admins only, else 403 ``admin_only``) write to tables whose users' policies
allow SELECT alone; they read the row as the user first, then write as the service role
in the same transaction (:func:`~lqs.db.pool.as_service_role`), with an audit entry
(:mod:`lqs.db.audit`). The actions themselves are :mod:`lqs.api.tenant_actions`, which
the dashboard's pages call too; this module translates. Query values and bodies are
checked here, so every refusal has the API's one error shape (a 400 naming the field).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from lqs.api import tenant_actions
from lqs.api.deps import ApiKeys, JsonBody, UserSession, UserTransaction
from lqs.api.errors import ApiError, invalid_parameter
from lqs.api.tenant_actions import (
    DEFAULT_KEY_NAME,
    DEFAULT_KEY_RATE,
    RETRIED_STATUS,
    admin,
    invalid_body,
    member,
    new_key_problems,
)
from lqs.db.clients import ApiKey, list_api_keys
from lqs.db.suppressions import StoredSuppression
from lqs.db.tenant_stats import (
    Bucket,
    DeliveryCounts,
    delivery_counts,
    lead_funnel,
    leads_by_outcome,
)
from lqs.domain.erasure import ERASED_LABEL
from lqs.domain.leads import FieldError
from lqs.domain.scoring import breakdown_to_json
from lqs.domain.text import whole_number
from lqs.domain.vocabulary import LeadStatus

router = APIRouter(prefix="/v1", tags=["tenant"])

DEFAULT_RANGE = timedelta(days=30)
MAX_RANGE = timedelta(days=400)
FIRST_YEAR = 2000
LAST_YEAR = 2999
"""The years a statistics window's ``from`` and ``to`` may name."""
BUCKETS: tuple[Bucket, ...] = ("hour", "day")
DEFAULT_PAGE = 50
MAX_PAGE = 200

_SECURED: dict[str, Any] = {"security": [{"userToken": []}]}
_ERROR_EXAMPLE = {"error": {"code": "admin_only", "message": "only owners and admins may do this"}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/json": {"example": _ERROR_EXAMPLE}}}
    for code, text in (
        (400, "A query value or body field is invalid: `field` names it"),
        (401, "Missing, malformed, forged or expired user token"),
        (403, "Not an owner or admin of the client (`admin_only`), or no client (`no_profile`)"),
    )
}
_NOT_FOUND = {"description": "No such row for this user's client"}


def _responses(
    status: int,
    example: Any = None,
    *,
    description: str = "Success",
    not_found: bool = False,
    conflict: str | None = None,
) -> dict[int | str, dict[str, Any]]:
    """A route's documented answers, in this order: its success ``status`` (with its
    ``example`` answer, if it has a body), the errors every route here shares (400, 401,
    403), 404 when its path names a row (``not_found``), and 409 when a row's state can
    refuse it (``conflict`` says when)."""
    success: dict[str, Any] = {"description": description}
    if example is not None:
        success["content"] = {"application/json": {"example": example}}
    responses: dict[int | str, dict[str, Any]] = {status: success, **_ERRORS}
    if not_found:
        responses[404] = _NOT_FOUND
    if conflict is not None:
        responses[409] = {"description": conflict}
    return responses


def _body(example: Any) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}, "example": example}},
        },
        **_SECURED,
    }


# ---------------------------------------------------------------- statistics


def _moment(value: str, field: str) -> datetime:
    """An ISO 8601 date or time in the years :data:`FIRST_YEAR` to :data:`LAST_YEAR`;
    without an offset, UTC.

    Raises:
        ApiError: 400 naming ``field``: unreadable, or out of those years.
    """
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise invalid_parameter(
            field, "must be an ISO 8601 date or time, such as 2026-01-31"
        ) from None
    # Bounded, so the window's arithmetic (a default 30 days back, an offset to UTC) cannot
    # leave datetime's years 1 to 9999.
    if not FIRST_YEAR <= moment.year <= LAST_YEAR:
        raise invalid_parameter(field, f"must be in the years {FIRST_YEAR} to {LAST_YEAR}")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def stats_window(start: str | None, end: str | None, now: datetime) -> tuple[datetime, datetime]:
    """The range ``from``/``to`` name: ``to`` defaults to now, ``from`` to 30 days before it.

    Raises:
        ApiError: 400 naming the field: unreadable, out of the years :data:`FIRST_YEAR`
            to :data:`LAST_YEAR`, ``from`` after ``to``, or a range
            longer than :data:`MAX_RANGE`.
    """
    until = _moment(end, "to") if end is not None else now
    since = _moment(start, "from") if start is not None else until - DEFAULT_RANGE
    if since > until:
        raise invalid_parameter("from", "must not be after to")
    if until - since > MAX_RANGE:
        raise invalid_parameter("from", f"the range from..to is at most {MAX_RANGE.days} days")
    return since, until


def _rate(count: int, attempted: int) -> float | None:
    return round(count / attempted, 4) if attempted else None


def _delivery_json(counts: DeliveryCounts, key: str) -> dict[str, Any]:
    return {
        key: counts.key,
        "total": counts.total,
        "attempted": counts.attempted,
        "delivered": counts.delivered,
        "bounced": counts.bounced,
        "complained": counts.complained,
        "failed": counts.failed,
        "rates": {
            "delivery": _rate(counts.delivered, counts.attempted),
            "bounce": _rate(counts.bounced, counts.attempted),
            "complaint": _rate(counts.complained, counts.attempted),
            "failure": _rate(counts.failed, counts.attempted),
        },
    }


_STATS_EXAMPLE = {
    "from": "2026-11-06T00:00:00+00:00",
    "to": "2026-12-06T00:00:00+00:00",
    "bucket": "day",
    "leads": [
        {
            "start": "2026-12-01T00:00:00+00:00",
            "counts": {"queued": 0, "qualified": 3, "nurture": 1, "disqualified": 2, "error": 0},
        }
    ],
    "funnel": {"received": 6, "qualified": 3, "contacted": 3, "delivered": 2},
    "delivery": {
        "by_provider": [
            {
                "provider": "resend",
                "total": 4,
                "attempted": 4,
                "delivered": 2,
                "bounced": 1,
                "complained": 1,
                "failed": 1,
                "rates": {"delivery": 0.5, "bounce": 0.25, "complaint": 0.25, "failure": 0.25},
            }
        ],
        "by_channel": [
            {
                "channel": "email",
                "total": 4,
                "attempted": 4,
                "delivered": 2,
                "bounced": 1,
                "complained": 1,
                "failed": 1,
                "rates": {"delivery": 0.5, "bounce": 0.25, "complaint": 0.25, "failure": 0.25},
            }
        ],
    },
}


@router.get(
    "/stats",
    summary="The client's leads by outcome, funnel and delivery rates over a range",
    description=(
        "Leads received in `from` <= t < `to` (ISO 8601; default the last 30 days, at most"
        " 400), counted per UTC `bucket` (`hour` or `day`; buckets without leads are left"
        " out) by their current status; the funnel received -> qualified -> contacted (a"
        " communication was created) -> delivered (one was delivered); and the"
        " communications created in the range by provider and by channel. Rates divide by"
        " `attempted` (sent, delivered, bounced or failed: not pending, not rejected); a"
        " complaint is a provider's complaint event for a message."
    ),
    responses=_responses(200, _STATS_EXAMPLE),
    openapi_extra=_SECURED,
)
async def stats(
    conn: UserSession,
    start: Annotated[str | None, Query(alias="from")] = None,
    end: Annotated[str | None, Query(alias="to")] = None,
    bucket: str = "day",
) -> dict[str, Any]:
    if bucket not in BUCKETS:
        raise invalid_parameter("bucket", "must be hour or day")
    unit: Bucket = "hour" if bucket == "hour" else "day"
    since, until = stats_window(start, end, datetime.now(UTC))
    profile = await member(conn)
    outcomes = await leads_by_outcome(conn, profile.client_id, since, until, unit)
    funnel = await lead_funnel(conn, profile.client_id, since, until)
    delivery = await delivery_counts(conn, profile.client_id, since, until)
    buckets: dict[datetime, dict[str, int]] = {}
    for row in outcomes:
        counts = buckets.setdefault(row.bucket_start, {str(s): 0 for s in LeadStatus})
        counts[row.status] = row.leads
    return {
        "from": since.isoformat(),
        "to": until.isoformat(),
        "bucket": bucket,
        "leads": [{"start": at.isoformat(), "counts": c} for at, c in buckets.items()],
        "funnel": {
            "received": funnel.received,
            "qualified": funnel.qualified,
            "contacted": funnel.contacted,
            "delivered": funnel.delivered,
        },
        "delivery": {
            "by_provider": [_delivery_json(c, "provider") for c in delivery["provider"]],
            "by_channel": [_delivery_json(c, "channel") for c in delivery["type"]],
        },
    }


# ---------------------------------------------------------------- suppressions


def _page_size(limit: str | None) -> int:
    """The ``limit`` query value.

    Raises:
        ApiError: 400 naming ``limit``.
    """
    if limit is None:
        return DEFAULT_PAGE
    size = whole_number(limit)
    if size is None or not 1 <= size <= MAX_PAGE:
        raise invalid_parameter("limit", f"must be a whole number from 1 to {MAX_PAGE}")
    return size


def _suppression_json(row: StoredSuppression) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "channel": row.channel,
        "recipient": row.recipient or ERASED_LABEL,
        "reason": row.reason,
        "source": row.source,
        "created_at": row.created_at.isoformat(),
    }


@router.get(
    "/suppressions",
    summary="The client's suppression list, newest first",
    description=(
        f"Pages of `limit` (1 to {MAX_PAGE}, default {DEFAULT_PAGE}); pass `next_cursor` as"
        " `cursor` for the next page (null: no more)."
    ),
    responses=_responses(
        200,
        {
            "data": [
                {
                    "id": "6f1c2d3e-0000-4000-8000-000000000001",
                    "channel": "email",
                    "recipient": "ann@example.com",
                    "reason": "bounce",
                    "source": "resend",
                    "created_at": "2026-12-01T10:00:00+00:00",
                }
            ],
            "next_cursor": "MjAyNi0xMi0wMVQxMDowMDowMCswMDowMHw2ZjFj",
        },
    ),
    openapi_extra=_SECURED,
)
async def list_suppressions(
    conn: UserSession, cursor: str | None = None, limit: str | None = None
) -> dict[str, Any]:
    size = _page_size(limit)
    profile = await member(conn)
    page = await tenant_actions.suppression_list(conn, profile, cursor, size)
    return {
        "data": [_suppression_json(row) for row in page.rows],
        "next_cursor": page.next_cursor,
    }


@router.delete(
    "/suppressions/{suppression_id}",
    status_code=204,
    summary="Lift a suppression (owners and admins; audited)",
    responses=_responses(204, description="Lifted", not_found=True),
    openapi_extra=_SECURED,
)
async def lift_suppression(conn: UserTransaction, suppression_id: str) -> Response:
    await tenant_actions.lift_suppression(conn, await admin(conn), suppression_id)
    return Response(status_code=204)


# ---------------------------------------------------------------- erasure

_ERASURE_EXAMPLE = {
    "erasure_id": "0f8e3c1a-4b7d-4e2a-9c61-5d2b8a7e4f10",
    "lead_id": "5b0c1f9e-3d0a-4e59-9c51-0c2a4b1f7e21",
    "counts": {"communications": 3, "communications_cancelled": 1, "consent_history": 1,
               "leads": 1, "provider_events": 4, "suppressions_added": 1},
}  # fmt: skip


@router.delete(
    "/leads/{lead_id}",
    summary="Erase a lead's personal data (GDPR Art. 17; owners and admins; audited)",
    description=(
        "What `lqs leads erase --lead ID` does: the lead and its messages, delivery events,"
        " consent history details and stored answers are anonymised (ids, statuses and"
        " timestamps stay), pending messages are cancelled, and the lead's addresses stay"
        " suppressed by a keyed hash until the person consents again. `reason` (required)"
        " is kept in the erasure record and the messages' `compliance_notes`: name no"
        " person in it. 409 `sending` (with Retry-After) while a message of the lead is"
        " being sent; an erased lead is 404."
    ),
    responses=_responses(
        200,
        _ERASURE_EXAMPLE,
        description="Erased",
        not_found=True,
        conflict="A message of the lead is being sent right now (`sending`)",
    ),
    openapi_extra=_SECURED,
)
async def erase_lead(
    conn: UserTransaction,
    lead_id: str,
    reason: Annotated[str | None, Query(description="Why (kept; name no person)")] = None,
) -> dict[str, Any]:
    done = await tenant_actions.erase_lead(conn, await admin(conn), lead_id, reason)
    return {"erasure_id": str(done.erasure_id), "lead_id": str(done.lead_id),
            "counts": done.counts}  # fmt: skip


# ---------------------------------------------------------------- communications


@router.post(
    "/communications/{communication_id}/retry",
    summary="Queue a failed communication again (owners and admins; audited)",
    description=(
        "What `lqs comms retry ID` does: status `pending`, retry count 0, due now. Only a"
        " `failed` communication with content can be retried (409 otherwise: one whose"
        " template failed needs `lqs comms retry --rerender`)."
    ),
    responses=_responses(
        200,
        {"id": "0b7e2c55-0000-4000-8000-000000000002", "status": "pending"},
        not_found=True,
        conflict="Not in a retryable state (`not_retryable`)",
    ),
    openapi_extra=_SECURED,
)
async def retry_communication(conn: UserTransaction, communication_id: str) -> dict[str, Any]:
    profile = await admin(conn)
    retried = await tenant_actions.retry_communication(conn, profile, communication_id)
    return {"id": str(retried), "status": RETRIED_STATUS}


# ---------------------------------------------------------------- API keys


def _key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": str(key.id),
        "name": key.name,
        "prefix": key.prefix,
        "rate_limit_per_minute": key.rate_limit_per_minute,
        "created_at": key.created_at.isoformat(),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


_KEY_EXAMPLE = {
    "id": "3d8b1f00-0000-4000-8000-000000000003",
    "name": "website form",
    "prefix": "lqs_Zx81QpLm",
    "rate_limit_per_minute": 600,
    "created_at": "2026-12-06T12:00:00+00:00",
    "revoked_at": None,
}


@router.get(
    "/keys",
    summary="The client's API keys (prefixes only)",
    responses=_responses(200, {"data": [_KEY_EXAMPLE]}),
    openapi_extra=_SECURED,
)
async def list_keys(conn: UserSession) -> dict[str, Any]:
    profile = await member(conn)
    return {"data": [_key_json(key) for key in await list_api_keys(conn, profile.client_id)]}


def _new_key(payload: Any) -> tuple[str, int]:
    """The name and rate limit of ``POST /v1/keys``'s body.

    Raises:
        ApiError: 400 naming every bad field.
    """
    if not isinstance(payload, dict):
        raise ApiError(
            400, "invalid_body", "the body must be a JSON object",
            fields=[FieldError("body", "not an object")],
        )  # fmt: skip
    problems = [
        FieldError(name, "unknown field")
        for name in payload
        if name not in ("name", "rate_limit_per_minute")
    ]
    name = payload.get("name", DEFAULT_KEY_NAME)
    rate = payload.get("rate_limit_per_minute", DEFAULT_KEY_RATE)
    problems += new_key_problems(name, rate)
    if problems:
        raise invalid_body(problems)
    assert isinstance(name, str)
    assert isinstance(rate, int)
    return name, rate


@router.post(
    "/keys",
    status_code=201,
    summary="Create an API key (owners and admins; audited); the key is shown only here",
    responses=_responses(201, {**_KEY_EXAMPLE, "key": "lqs_Zx81QpLm..."}, description="Created"),
    openapi_extra=_body({"name": "website form", "rate_limit_per_minute": 600}),
)
async def create_key(conn: UserTransaction, payload: JsonBody) -> JSONResponse:
    profile = await admin(conn)
    name, rate = _new_key(payload)
    key, plaintext = await tenant_actions.create_key(conn, profile, name, rate)
    return JSONResponse(
        {**_key_json(key), "key": plaintext},
        status_code=201,
        headers={"Cache-Control": "no-store"},
    )


@router.delete(
    "/keys/{key_id}",
    status_code=204,
    summary="Revoke an API key (owners and admins; audited)",
    responses=_responses(
        204,
        description="Revoked",
        not_found=True,
        conflict="Already revoked (`already_revoked`)",
    ),
    openapi_extra=_SECURED,
)
async def revoke_key(conn: UserTransaction, keys: ApiKeys, key_id: str) -> Response:
    await tenant_actions.revoke_key(conn, await admin(conn), key_id)
    keys.forget()  # refused by this process at once, by the others within seconds
    return Response(status_code=204)


# ---------------------------------------------------------------- rules tester


@router.post(
    "/rules/test",
    summary="Score a lead under the client's current rules; nothing is stored",
    description=(
        "The body is a lead as `POST /v1/leads` takes it. The answer is what the processor"
        " would decide for it now: score, outcome, grade and each matching rule."
    ),
    responses=_responses(
        200,
        {
            "score": 55,
            "outcome": "qualified",
            "grade": "C",
            "reason": "score 55 reached the qualified threshold 50",
            "rules": "default",
            "breakdown": [
                {
                    "rule_id": "corporate-email",
                    "rule_version": 1,
                    "field": "email",
                    "value": "ann@acme.example",
                    "points": 25,
                    "reason": "Email on a company domain",
                }
            ],
        },
        conflict="The client's stored settings or rules do not parse",
    ),
    openapi_extra=_body({"email": "ann@acme.example", "job_title": "CTO", "country": "US"}),
)
async def rules_test(conn: UserSession, payload: JsonBody) -> dict[str, Any]:
    profile = await member(conn)
    if not isinstance(payload, dict):
        raise ApiError(
            400, "invalid_lead", "the body must be a lead (a JSON object)",
            fields=[FieldError("body", "not an object")],
        )  # fmt: skip
    tested = await tenant_actions.try_rules(conn, profile, payload)
    result = tested.result
    return {
        "score": result.score,
        "outcome": str(result.outcome),
        "grade": result.grade,
        "reason": result.reason,
        "rules": tested.rules,
        "breakdown": breakdown_to_json(result.breakdown),
    }


# ---------------------------------------------------------------- subject access

_SUBJECT_EXAMPLE = {
    "schema_version": 1,
    "client": {"id": "6f1c0e3a-2b7d-4c1e-9a53-0d8e7f6a5b41", "slug": "acme", "name": "Acme"},
    "generated_at": "2026-12-07T12:00:00+00:00",
    "subject": {"email": "ada@example.com", "phone": None},
    "leads": [],
    "communications": [],
    "delivery_attempts": [],
    "provider_events": [],
    "consent_history": [],
    "suppressions": [],
    "audit_log": [],
    "idempotency_records": [],
    "lead_import_rows": [],
    "recipient_sends": [],
}


@router.get(
    "/subjects",
    summary="Everything held on one person (GDPR Art. 15 subject access); admins only",
    description=(
        "One JSON document (docs/subject-access.schema.json) with every record the client"
        " holds on the person with this `email` and/or `phone` (E.164): leads with all"
        " their fields, communications with their content, delivery attempts, provider"
        " events with their payloads, consent history with its evidence, suppressions,"
        " audit entries, Idempotency-Key records, CSV rows and frequency-cap counts."
        " Nothing held: empty lists. A bad or missing address: 400 naming the field."
    ),
    responses={
        **_responses(200, _SUBJECT_EXAMPLE),
        400: {"description": "`email` or `phone` is missing or not valid: `field` names it"},
    },
    openapi_extra=_SECURED,
)
async def subject_access(
    conn: UserTransaction,
    email: Annotated[str | None, Query(description="The person's email address")] = None,
    phone: Annotated[str | None, Query(description="The person's phone number, E.164")] = None,
) -> dict[str, Any]:
    profile = await admin(conn)
    return await tenant_actions.export_subject(conn, profile, email, phone)
