"""Lead intake: ``POST /v1/leads`` and ``POST /v1/leads/batch``, authenticated by API key.

A body that is not plain JSON is refused with 400 (:data:`lqs.api.deps.JsonBody`).
Problems inside a lead (NUL, lone surrogates) are :func:`~lqs.domain.leads.parse_lead`'s:
422 naming the field.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from lqs.api.deps import IdempotencyKey, JsonBody, Pool, Principal
from lqs.api.errors import ApiError, error_responses
from lqs.db.clients import ApiPrincipal
from lqs.db.idempotency import (
    IdempotencyConflict,
    StoredResponse,
    claim_idempotency_key,
    remember_response,
)
from lqs.db.leads import StoredLead, insert_or_merge_leads
from lqs.db.pool import run_transaction
from lqs.domain.leads import (
    FieldError,
    LeadSubmission,
    LeadValidationError,
    NewLead,
    parse_lead,
)

MAX_BATCH = 1000

router = APIRouter()

_COMPONENTS = "#/components/schemas/{model}"
_LEAD_DOCUMENT = LeadSubmission.model_json_schema(ref_template=_COMPONENTS)
SCHEMAS: dict[str, Any] = {
    "LeadSubmission": {k: v for k, v in _LEAD_DOCUMENT.items() if k != "$defs"},
    **_LEAD_DOCUMENT.get("$defs", {}),
}
"""The schemas the request bodies refer to, for the OpenAPI document's components (the
lead's own ``$defs``, such as ``ConsentStatus``, would not resolve inside a path)."""
_LEAD_SCHEMA = {"$ref": _COMPONENTS.format(model="LeadSubmission")}
SECURITY_SCHEMES: dict[str, Any] = {
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "A client's API key (`lqs_...`, from `lqs keys create`).",
    }
}
_SECURED: dict[str, Any] = {"security": [{"apiKey": []}]}
_ERRORS = error_responses(
    (
        (400, "Malformed JSON or Idempotency-Key"),
        (401, "Missing, unknown or revoked API key"),
        (409, "Idempotency-Key reused with a different body"),
        (413, "Body over 1 MiB"),
        (422, "Invalid lead(s): every bad field is named"),
        (429, "Rate limit exceeded; see Retry-After"),
    )
)


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
    pool: AsyncConnectionPool,
    principal: ApiPrincipal,
    key: str | None,
    payload: Any,
    leads: Sequence[NewLead],
    respond: Callable[[list[StoredLead]], StoredResponse],
) -> Response:
    """Insert or merge the leads, honouring Idempotency-Key, in one transaction.

    Raises:
        ApiError: 409, the Idempotency-Key was used within 24 h for a different body.
    """
    # Only an Idempotency-Key needs the body's hash (a canonical dump of the whole body).
    request_hash = _request_hash(payload) if key is not None else b""

    async def store(conn: AsyncConnection) -> Response:
        if key is not None:
            try:
                replay = await claim_idempotency_key(conn, principal.client_id, key, request_hash)
            except IdempotencyConflict as exc:
                raise ApiError(
                    409,
                    "idempotency_key_reused",
                    str(exc),
                    fields=[FieldError("Idempotency-Key", "reused with a different body")],
                ) from None
            if replay is not None:
                return JSONResponse(
                    replay.body, status_code=200, headers={"Idempotent-Replayed": "true"}
                )
        stored = await insert_or_merge_leads(
            conn, principal.client_id, leads, api_key_id=principal.key_id
        )
        response = respond(stored)
        if key is not None:
            await remember_response(conn, principal.client_id, key, request_hash, response)
        return JSONResponse(response.body, status_code=response.status_code)

    # Everything `store` does is in its transaction: failing before COMMIT leaves nothing,
    # so it is tried again on a fresh connection. A COMMIT whose answer was lost may have
    # committed; only an Idempotency-Key makes the retry safe (it replays), else 503.
    return await run_transaction(pool, store, retry_at_commit=key is not None)


async def _one_lead(principal: Principal, payload: JsonBody) -> NewLead:
    """The body's lead, in the client's default region.

    Raises:
        ApiError: 422, the body is not an object or a field is invalid (each one named).
    """
    if not isinstance(payload, dict):
        raise ApiError(
            422,
            "invalid_lead",
            "the body must be a JSON object",
            fields=[FieldError("body", "must be a JSON object")],
        )
    try:
        return parse_lead(payload, default_region=_default_region(principal))
    except LeadValidationError as exc:
        raise ApiError(422, "invalid_lead", str(exc), fields=exc.errors) from None


async def _lead_batch(principal: Principal, payload: JsonBody) -> list[NewLead]:
    """The body's ``leads``, all valid, in the client's default region.

    Raises:
        ApiError: 422, the body is not ``{"leads": [...]}`` with 1 to :data:`MAX_BATCH`
            leads, or some lead's field is invalid (each one named, by its index).
    """
    items = payload.get("leads") if isinstance(payload, dict) else None
    if not isinstance(items, list) or not items or len(items) > MAX_BATCH:
        raise ApiError(
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
        raise ApiError(
            422,
            "invalid_leads",
            f"{len(problems)} invalid field(s); nothing was stored",
            fields=problems,
        )
    return leads


# Dependencies resolve in the order of a handler's parameters, which is the order of the
# checks: the API key, then the body's JSON, then the leads in it, then Idempotency-Key.
OneLead = Annotated[NewLead, Depends(_one_lead)]
LeadBatch = Annotated[list[NewLead], Depends(_lead_batch)]


@router.post(
    "/v1/leads",
    status_code=201,
    responses=_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _LEAD_SCHEMA}},
        },
        **_SECURED,
    },
)
async def create_lead(
    principal: Principal, payload: JsonBody, lead: OneLead, key: IdempotencyKey, pool: Pool
) -> Response:
    """Queue one lead, or merge it into the client's open lead with the same email.

    201 with the new lead's id; 200 with ``duplicate: true`` when merged; 200 replaying
    the first response when the same Idempotency-Key and body are sent again within 24 h.
    """

    def respond(stored: list[StoredLead]) -> StoredResponse:
        return StoredResponse(200 if stored[0].duplicate else 201, _lead_json(stored[0]))

    return await _store(pool, principal, key, payload, [lead], respond)


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
        },
        **_SECURED,
    },
)
async def create_leads_batch(
    principal: Principal, payload: JsonBody, leads: LeadBatch, key: IdempotencyKey, pool: Pool
) -> Response:
    """Queue up to 1,000 leads in one statement; all are valid or none is stored.

    Answers 200 with one ``{id, status, duplicate}`` per submitted lead, in order.
    """

    def respond(stored: list[StoredLead]) -> StoredResponse:
        return StoredResponse(
            200,
            {
                "leads": [_lead_json(s) for s in stored],
                "created": sum(not s.duplicate for s in stored),
                "duplicates": sum(s.duplicate for s in stored),
            },
        )

    return await _store(pool, principal, key, payload, leads, respond)
