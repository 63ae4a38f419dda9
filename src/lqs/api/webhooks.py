"""Delivery webhooks: ``POST /webhooks/{provider}[/{client_id}]``.

Each request is checked on its raw bytes with the client's own secret or key by the
provider's ``verify`` and read by its ``parse`` (:data:`lqs.providers.registry.INBOUND`;
Resend: Svix signature and timestamp; SendGrid: ECDSA P-256 over timestamp + body;
Twilio: HMAC-SHA1 over the public URL and the sorted form). A bad or missing signature
gets 401 and changes nothing. A signed body that cannot be used (not UTF-8, not the documented
shape, or holding what jsonb cannot store: NUL, lone surrogates, NaN) gets 400 and is kept
raw in ``webhook_rejects`` (:mod:`lqs.db.webhook_rejects`) for inspection. Verified events are
only stored here, all of a request's in one statement that also wakes the worker
(:func:`lqs.db.events.store_webhook_events`), and answered 200 with ``{"received": n,
"duplicates": d}``; the worker's applier matches and applies them moments later. A
repeated event is acknowledged and has no second effect, and an event for an unknown
message is stored and acknowledged all the same, so the provider stops retrying.

The clients' webhook credentials are remembered for a few seconds per process
(:mod:`lqs.api.webhook_cache`); a request that the remembered ones do not verify is checked
again against a fresh lookup. In the steady state a request is two round trips to the
database: the pool's check of the connection and the insert.

With the client id in the path (the URL to register with the provider) only that
client's secret is tried. Without it, every client with this provider's webhook
credentials is tried in turn (Twilio: those whose account SID matches ``AccountSid``);
that costs one signature check per such client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, NoReturn
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool

from lqs.api.deps import WebhookPool, WebhookSettings
from lqs.api.errors import ApiError
from lqs.api.metrics import WEBHOOK_EVENTS, WEBHOOK_REQUESTS
from lqs.api.webhook_cache import WebhookCandidateCache
from lqs.db.clients import WebhookCandidate, webhook_candidates
from lqs.db.events import store_webhook_events
from lqs.db.pool import run_transaction
from lqs.db.webhook_rejects import store_webhook_reject
from lqs.domain.events import DeliveryEvent
from lqs.domain.leads import FieldError, escaped, unstorable_text, unstorable_values
from lqs.providers.base import (
    InboundProvider,
    InboundRequest,
    ProviderConfigError,
    WebhookMalformed,
    WebhookRejected,
)
from lqs.providers.registry import INBOUND

router = APIRouter()


async def _candidate_cache(request: Request) -> WebhookCandidateCache:
    """This process's memory of webhook credentials (set by the app's lifespan)."""
    cache: WebhookCandidateCache = request.app.state.webhook_candidates
    return cache


CandidateCache = Annotated[WebhookCandidateCache, Depends(_candidate_cache)]

MAX_EVENT_ID = 255
"""``provider_events.event_id``'s limit."""
MAX_PAYLOAD_NESTING = 32
"""The deepest event payload stored (the providers' documented events nest 3 levels)."""
KEPT_HEADERS = (
    "content-type",
    "content-length",
    "user-agent",
    "svix-id",
    "svix-timestamp",
    "x-twilio-email-event-webhook-timestamp",
    "i-twilio-idempotency-token",
)
"""What a refused webhook keeps of its headers: never a signature or a credential."""


def _refused(provider: str, status: int, code: str, message: str) -> ApiError:
    """The refusal to raise, counted by provider and code."""
    WEBHOOK_REQUESTS.labels(provider=provider, outcome=code).inc()
    return ApiError(status, code, message, fields=[FieldError("body", message)])


def _usable_events(body: bytes, parse: Callable[[], list[DeliveryEvent]]) -> list[DeliveryEvent]:
    """The events of a verified body, each one something ``provider_events`` can store.

    Raises:
        WebhookMalformed: the body is not UTF-8 or not the provider's shape, or an event's
            id is too long, or an event holds text or numbers jsonb cannot store.
    """
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebhookMalformed(f"the body is not valid UTF-8 (byte {exc.start})") from None
    events = parse()
    for index, event in enumerate(events):
        if len(event.event_id) > MAX_EVENT_ID:
            raise WebhookMalformed(f"event {index}: id over {MAX_EVENT_ID} characters")
        # The payload first, for the exact path; then what came from elsewhere (svix-id).
        problems = unstorable_values(event.payload, "", max_nesting=MAX_PAYLOAD_NESTING)
        texts = {"id": event.event_id, "type": event.raw_type, "external id": event.external_id,
                 "recipient": event.recipient, "reason": event.reason,
                 "error code": event.error_code}  # fmt: skip
        problems += [
            FieldError(name, reason)
            for name, text in texts.items()
            if text is not None and (reason := unstorable_text(text)) is not None
        ]
        if problems:
            where = problems[0].field.lstrip(".") or "body"
            raise WebhookMalformed(f"event {index}: {where} {problems[0].message}")
    return events


async def _reject(
    pool: AsyncConnectionPool,
    request: Request,
    provider: str,
    client_id: UUID,
    body: bytes,
    reason: str,
) -> NoReturn:
    """Keep a verified body we cannot use, and answer 400.

    Raises:
        ApiError: 400 ``malformed_webhook``, always.
    """
    reason = escaped(reason, 500)
    headers = {name: request.headers[name] for name in KEPT_HEADERS if name in request.headers}
    # A COMMIT whose answer was lost and is repeated keeps the body twice: harmless.
    await run_transaction(
        pool,
        lambda conn: store_webhook_reject(
            conn, client_id=client_id, provider=provider, reason=reason, headers=headers, body=body
        ),
        retry_at_commit=True,
    )
    raise _refused(provider, 400, "malformed_webhook", reason)


async def _receive(
    request: Request,
    provider: str,
    client_id: UUID | None,
    config: WebhookSettings,
    pool: WebhookPool,
    cache: WebhookCandidateCache,
) -> JSONResponse:
    inbound = INBOUND[provider]
    url = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    received = InboundRequest(
        body=await request.body(),
        headers=request.headers,
        query=request.query_params,
        url=url,
        public_base_url=config.public_base_url,
        tolerance=config.tolerance,
    )
    body = received.body

    async def look_up() -> list[WebhookCandidate]:
        return await run_transaction(
            pool, lambda conn: webhook_candidates(conn, provider, client_id), retry_at_commit=True
        )

    candidates, remembered = await cache.candidates(provider, client_id, look_up)
    matched, reason = _verified(inbound, received, candidates)
    if matched is None and remembered:
        # A new client, or a rotated secret: what was remembered is not trusted to refuse.
        candidates, _ = await cache.candidates(provider, client_id, look_up, fresh=True)
        matched, reason = _verified(inbound, received, candidates)
    if matched is None:
        raise _refused(provider, 401, "invalid_signature", reason)
    try:
        events = _usable_events(body, lambda: inbound.parse(received))
    except WebhookMalformed as exc:
        await _reject(pool, request, provider, matched.client_id, body, exc.reason)
    # Stored once per provider event id, so repeating it, even after a commit whose
    # answer was lost, has no second effect; the worker applies them.
    outcome = await store_webhook_events(pool, matched.client_id, provider, events)
    WEBHOOK_REQUESTS.labels(provider=provider, outcome="accepted").inc()
    for result, count in (("stored", outcome.stored), ("duplicate", outcome.duplicates)):
        if count:
            WEBHOOK_EVENTS.labels(provider=provider, result=result).inc(count)
    answer: dict[str, Any] = {"received": len(events), "duplicates": outcome.duplicates}
    return JSONResponse(answer)


def _verified(
    inbound: InboundProvider, received: InboundRequest, candidates: list[WebhookCandidate]
) -> tuple[WebhookCandidate | None, str]:
    """The first candidate whose credentials verify the request, else the last reason."""
    reason = "no client has webhook credentials for this provider"
    for candidate in candidates:
        try:
            inbound.verify(received, candidate.delivery)
        except WebhookRejected as exc:
            reason = exc.reason
            continue
        except ProviderConfigError as exc:
            reason = f"this client's webhook key cannot be used: {exc}"
            continue
        return candidate, reason
    return None, reason


def _unknown(provider: str) -> ApiError:
    return ApiError(
        404,
        "unknown_provider",
        f"no webhook receiver for {provider!r}: use one of {', '.join(INBOUND)}",
        fields=[FieldError("provider", "unknown")],
    )


_STORED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Every event of the request is stored (``received``), "
        "``duplicates`` of them were stored before and have no second effect. The worker "
        "applies them moments later, so whether they match a message is not in the answer.",
        "content": {"application/json": {"example": {"received": 2, "duplicates": 0}}},
    }
}


@router.post("/webhooks/{provider}/{client_id}", include_in_schema=True, responses=_STORED)
async def client_webhook(
    request: Request,
    provider: str,
    client_id: str,
    config: WebhookSettings,
    pool: WebhookPool,
    cache: CandidateCache,
) -> JSONResponse:
    """A provider's delivery events for one client (the URL to register).

    Answers ``{"received": n, "duplicates": d}`` once the events are stored; the worker
    applies them moments later."""
    if provider not in INBOUND:
        raise _unknown(provider)
    try:
        cid = UUID(client_id)
    except ValueError:
        raise ApiError(
            404,
            "unknown_client",
            "the path's client id is not a UUID",
            fields=[FieldError("client_id", "not a UUID")],
        ) from None
    return await _receive(request, provider, cid, config, pool, cache)


@router.post("/webhooks/{provider}", responses=_STORED)
async def shared_webhook(
    request: Request,
    provider: str,
    config: WebhookSettings,
    pool: WebhookPool,
    cache: CandidateCache,
) -> JSONResponse:
    """A provider's delivery events, the client found by whose secret signed them.

    Answers ``{"received": n, "duplicates": d}`` once the events are stored; the worker
    applies them moments later."""
    if provider not in INBOUND:
        raise _unknown(provider)
    return await _receive(request, provider, None, config, pool, cache)
