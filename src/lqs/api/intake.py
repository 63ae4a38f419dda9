"""Lead intake: ``POST /v1/leads`` and ``POST /v1/leads/batch``, authenticated by API key.

The body's JSON is refused with 400 when it is not plain JSON a database can keep: nested
more than :data:`MAX_JSON_DEPTH` levels, an integer over ``MAX_NUMBER_DIGITS`` digits, a
number too large for a float, or ``NaN``/``Infinity``. Problems inside a lead (NUL, lone
surrogates) are :func:`~lqs.domain.leads.parse_lead`'s: 422 naming the field.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from lqs.api.errors import error_response
from lqs.api.limits import RateLimiter, retry_after_header
from lqs.db.clients import ApiPrincipal, authenticate_api_key
from lqs.db.idempotency import (
    IdempotencyConflict,
    StoredResponse,
    claim_idempotency_key,
    remember_response,
)
from lqs.db.leads import StoredLead, insert_or_merge_leads
from lqs.db.pool import run_transaction
from lqs.domain.leads import (
    MAX_NUMBER_DIGITS,
    FieldError,
    LeadSubmission,
    LeadValidationError,
    NewLead,
    parse_lead,
)

MAX_BATCH = 1000
MAX_JSON_DEPTH = 32
"""The deepest body accepted: a batch of leads with nested custom fields needs 7 levels."""
_CONTAINERS = (dict, list)

router = APIRouter()

_LEAD_SCHEMA = LeadSubmission.model_json_schema()
_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": "string"},
                "fields": {"type": "array", "items": {"type": "object"}},
            },
        }
    },
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"application/json": {"schema": _ERROR_SCHEMA}}}
    for code, text in (
        (400, "Malformed JSON or Idempotency-Key"),
        (401, "Missing, unknown or revoked API key"),
        (409, "Idempotency-Key reused with a different body"),
        (413, "Body over 1 MiB"),
        (422, "Invalid lead(s): every bad field is named"),
        (429, "Rate limit exceeded; see Retry-After"),
    )
}


class _Refused(Exception):
    def __init__(self, response: JSONResponse) -> None:
        self.response = response


async def _authenticate(request: Request) -> ApiPrincipal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _Refused(
            error_response(
                401,
                "missing_api_key",
                "send the client's API key as `Authorization: Bearer lqs_...`",
                fields=[FieldError("Authorization", "missing")],
                headers={"WWW-Authenticate": "Bearer"},
            )
        )
    pool: AsyncConnectionPool = request.app.state.pool
    principal = await run_transaction(
        pool, lambda conn: authenticate_api_key(conn, token.strip()), retry_at_commit=True
    )
    if principal is None:
        raise _Refused(
            error_response(
                401,
                "invalid_api_key",
                "the API key is unknown or has been revoked",
                fields=[FieldError("Authorization", "unknown or revoked key")],
                headers={"WWW-Authenticate": "Bearer"},
            )
        )
    limiter: RateLimiter = request.app.state.rate_limiter
    wait = limiter.acquire(principal.key_id, principal.rate_limit_per_minute)
    if wait > 0:
        raise _Refused(
            error_response(
                429,
                "rate_limited",
                f"more than {principal.rate_limit_per_minute} requests a minute for this key",
                headers=retry_after_header(wait),
            )
        )
    return principal


class _NotPlainJson(ValueError):
    """A number or constant in the body that JSON or jsonb cannot carry."""


def _bounded_int(text: str) -> int:
    # Checked before conversion: Python's own limit (4,300 digits) can be lifted by the
    # environment, and converting a long digit string costs quadratic time.
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise _NotPlainJson(f"an integer has more than {MAX_NUMBER_DIGITS} digits")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotPlainJson(f"the number {text[:40]} is too large")
    return value


def _no_constant(name: str) -> Any:
    raise _NotPlainJson(f"{name} is not a JSON value")


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests more than ``limit`` arrays/objects: one level at a time,
    so without recursion, and stopping at the first level past the limit."""
    level = [value]
    for _ in range(limit):
        deeper: list[Any] = []
        for item in level:
            children = item.values() if type(item) is dict else item
            deeper += [child for child in children if type(child) in _CONTAINERS]
        if not deeper:
            return False
        level = deeper
    return True


def _malformed(message: str) -> _Refused:
    return _Refused(
        error_response(
            400,
            "invalid_json",
            f"the body is not valid JSON: {message}",
            fields=[FieldError("body", "not valid JSON")],
        )
    )


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        payload = json.loads(
            raw,
            parse_int=_bounded_int,
            parse_float=_finite_float,
            parse_constant=_no_constant,
        )
    except RecursionError:
        raise _malformed(f"it nests more than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, _NotPlainJson
        raise _malformed(str(exc)) from exc
    # A body with no more brackets than the limit cannot nest deeper (bytes over-count in
    # UTF-16/32, which only means walking it).
    brackets = raw.count(b"[") + raw.count(b"{")
    if brackets > MAX_JSON_DEPTH and _deeper_than(payload, MAX_JSON_DEPTH):
        raise _malformed(f"it nests more than {MAX_JSON_DEPTH} levels")
    return payload


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isprintable():
        raise _Refused(
            error_response(
                400,
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 printable characters",
                fields=[FieldError("Idempotency-Key", "1 to 255 printable characters")],
            )
        )
    return key


def _request_hash(payload: Any) -> bytes:
    # Canonical JSON: the same body re-serialised differently is still the same request.
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # surrogatepass: a batch's keys beside "leads" are hashed but never validated or stored.
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).digest()


def _default_region(principal: ApiPrincipal) -> str:
    region = principal.settings.get("default_region")
    return region if isinstance(region, str) else "US"


def _lead_json(stored: StoredLead) -> dict[str, Any]:
    return {"id": str(stored.id), "status": stored.status, "duplicate": stored.duplicate}


async def _store(
    request: Request,
    principal: ApiPrincipal,
    payload: Any,
    leads: Sequence[NewLead],
    respond: Callable[[list[StoredLead]], StoredResponse],
) -> Response:
    """Insert or merge the leads, honouring Idempotency-Key, in one transaction."""
    key = _idempotency_key(request)
    pool: AsyncConnectionPool = request.app.state.pool
    request_hash = _request_hash(payload)

    async def store(conn: AsyncConnection) -> Response:
        if key is not None:
            try:
                replay = await claim_idempotency_key(conn, principal.client_id, key, request_hash)
            except IdempotencyConflict as exc:
                return error_response(
                    409,
                    "idempotency_key_reused",
                    str(exc),
                    fields=[FieldError("Idempotency-Key", "reused with a different body")],
                )
            if replay is not None:
                return JSONResponse(
                    replay.body, status_code=200, headers={"Idempotent-Replayed": "true"}
                )
        stored = await insert_or_merge_leads(conn, principal.client_id, leads)
        response = respond(stored)
        if key is not None:
            await remember_response(conn, principal.client_id, key, request_hash, response)
        return JSONResponse(response.body, status_code=response.status_code)

    # Everything `store` does is in its transaction: failing before COMMIT leaves nothing,
    # so it is tried again on a fresh connection. A COMMIT whose answer was lost may have
    # committed; only an Idempotency-Key makes the retry safe (it replays), else 503.
    return await run_transaction(pool, store, retry_at_commit=key is not None)


@router.post(
    "/v1/leads",
    status_code=201,
    responses=_ERRORS,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": _LEAD_SCHEMA}}}
    },
)
async def create_lead(request: Request) -> Response:
    """Queue one lead, or merge it into the client's open lead with the same email.

    201 with the new lead's id; 200 with ``duplicate: true`` when merged; 200 replaying
    the first response when the same Idempotency-Key and body are sent again within 24 h.
    """
    try:
        principal = await _authenticate(request)
        payload = await _json_body(request)
        if not isinstance(payload, dict):
            return error_response(
                422,
                "invalid_lead",
                "the body must be a JSON object",
                fields=[FieldError("body", "must be a JSON object")],
            )
        try:
            lead = parse_lead(payload, default_region=_default_region(principal))
        except LeadValidationError as exc:
            return error_response(422, "invalid_lead", str(exc), fields=exc.errors)

        def respond(stored: list[StoredLead]) -> StoredResponse:
            return StoredResponse(200 if stored[0].duplicate else 201, _lead_json(stored[0]))

        return await _store(request, principal, payload, [lead], respond)
    except _Refused as refused:
        return refused.response


@router.post(
    "/v1/leads/batch",
    responses=_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["leads"],
                        "properties": {
                            "leads": {"type": "array", "maxItems": MAX_BATCH, "items": _LEAD_SCHEMA}
                        },
                    }
                }
            },
        }
    },
)
async def create_leads_batch(request: Request) -> Response:
    """Queue up to 1,000 leads in one statement; all are valid or none is stored.

    Answers 200 with one ``{id, status, duplicate}`` per submitted lead, in order.
    """
    try:
        principal = await _authenticate(request)
        payload = await _json_body(request)
        items = payload.get("leads") if isinstance(payload, dict) else None
        if not isinstance(items, list) or not items or len(items) > MAX_BATCH:
            return error_response(
                422,
                "invalid_batch",
                f'the body must be {{"leads": [...]}} with 1 to {MAX_BATCH} leads',
                fields=[FieldError("leads", f"a list of 1 to {MAX_BATCH} leads")],
            )
        region = _default_region(principal)
        leads: list[NewLead] = []
        problems: list[FieldError] = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                problems.append(FieldError(f"leads[{index}]", "must be a JSON object"))
                continue
            try:
                leads.append(parse_lead(item, default_region=region))
            except LeadValidationError as exc:
                problems += [FieldError(f"leads[{index}].{e.field}", e.message) for e in exc.errors]
        if problems:
            return error_response(
                422,
                "invalid_leads",
                f"{len(problems)} invalid field(s); nothing was stored",
                fields=problems,
            )

        def respond(stored: list[StoredLead]) -> StoredResponse:
            return StoredResponse(
                200,
                {
                    "leads": [_lead_json(s) for s in stored],
                    "created": sum(not s.duplicate for s in stored),
                    "duplicates": sum(s.duplicate for s in stored),
                },
            )

        return await _store(request, principal, payload, leads, respond)
    except _Refused as refused:
        return refused.response
