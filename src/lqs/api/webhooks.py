"""Delivery webhooks: ``POST /webhooks/{resend|sendgrid|twilio}[/{client_id}]``.

Each request is checked on its raw bytes with the client's own secret or key (Resend:
Svix signature and timestamp; SendGrid: ECDSA P-256 over timestamp + body; Twilio:
HMAC-SHA1 over the public URL and the sorted form). A bad or missing signature gets 401
and changes nothing. A signed body that cannot be used (not UTF-8, not the documented
shape, or holding what jsonb cannot store: NUL, lone surrogates, NaN) gets 400 and is kept
raw in ``webhook_rejects`` (:mod:`lqs.db.webhook_rejects`) for inspection. Verified events are
stored once and applied (:mod:`lqs.db.events`); a repeated event is acknowledged with 200
and has no second effect, and an event for an unknown message is stored, acknowledged and
counted, so the provider stops retrying.

With the client id in the path (the URL to register with the provider) only that
client's secret is tried. Without it, every client with this provider's webhook
credentials is tried in turn (Twilio: those whose account SID matches ``AccountSid``);
that costs one signature check per such client.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from lqs.api.errors import error_response
from lqs.api.metrics import WEBHOOK_EVENTS, WEBHOOK_REQUESTS
from lqs.db.events import ingest_events
from lqs.db.pool import run_transaction
from lqs.db.webhook_rejects import store_webhook_reject
from lqs.domain.delivery import DeliverySettings, DeliverySettingsError, parse_delivery_settings
from lqs.domain.events import DeliveryEvent
from lqs.domain.leads import FieldError, escaped, unstorable_text, unstorable_values
from lqs.providers import resend, sendgrid, twilio
from lqs.providers.base import ProviderConfigError, WebhookMalformed, WebhookRejected

router = APIRouter()

PROVIDERS = ("resend", "sendgrid", "twilio")
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


@dataclass(frozen=True)
class WebhookConfig:
    """What the receivers need from the settings."""

    public_base_url: str
    tolerance: float = 300.0


@dataclass(frozen=True)
class _Candidate:
    client_id: UUID
    delivery: DeliverySettings


async def _candidates(
    pool: AsyncConnectionPool, provider: str, client_id: UUID | None
) -> list[_Candidate]:
    async def read(conn: AsyncConnection) -> list[tuple[Any, ...]]:
        cur = await conn.execute(
            "SELECT id, settings -> 'delivery' FROM public.clients"
            " WHERE (%(id)s::uuid IS NULL OR id = %(id)s::uuid)"
            "   AND settings -> 'delivery' -> %(provider)s IS NOT NULL"
            " ORDER BY created_at, id",
            {"id": client_id, "provider": provider},
        )
        return await cur.fetchall()

    rows = await run_transaction(pool, read, retry_at_commit=True)
    found = []
    for cid, data in rows:
        try:
            found.append(_Candidate(cid, parse_delivery_settings(data)))
        except DeliverySettingsError:
            continue
    return found


def _verifier(
    provider: str, request: Request, body: bytes, config: WebhookConfig
) -> tuple[Callable[[DeliverySettings], None], Callable[[], list[DeliveryEvent]]]:
    """How to check this request against one client's settings, and how to parse it."""
    headers: Mapping[str, str] = request.headers
    if provider == "resend":

        def check_resend(d: DeliverySettings) -> None:
            if d.resend is None or d.resend.webhook_secret is None:
                raise WebhookRejected("no Resend webhook secret is configured for this client")
            resend.verify_webhook(
                body,
                headers,
                d.resend.webhook_secret.get_secret_value(),
                tolerance=config.tolerance,
            )

        return check_resend, lambda: resend.parse_webhook(body, headers)
    if provider == "sendgrid":

        def check_sendgrid(d: DeliverySettings) -> None:
            if d.sendgrid is None or d.sendgrid.webhook_public_key is None:
                raise WebhookRejected("no SendGrid verification key is configured for this client")
            sendgrid.verify_webhook(
                body, headers, d.sendgrid.webhook_public_key, tolerance=config.tolerance
            )

        return check_sendgrid, lambda: sendgrid.parse_webhook(body)
    params = _form(body)
    url = config.public_base_url.rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    account = dict(params).get("AccountSid")

    def check_twilio(d: DeliverySettings) -> None:
        if d.twilio is None:
            raise WebhookRejected("Twilio is not configured for this client")
        if account is not None and account != d.twilio.account_sid:
            raise WebhookRejected("AccountSid does not match this client's account")
        twilio.verify_webhook(
            url,
            params,
            headers.get(twilio.SIGNATURE_HEADER),
            d.twilio.auth_token.get_secret_value(),
        )

    # Our id in the callback URL's query is covered by the signature checked first.
    communication_id = twilio.communication_id_in_query(request.query_params)
    return check_twilio, lambda: twilio.parse_webhook(dict(params), communication_id)


def _form(body: bytes) -> Sequence[tuple[str, str]]:
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        return []


def _refused(provider: str, status: int, code: str, message: str) -> JSONResponse:
    WEBHOOK_REQUESTS.labels(provider=provider, outcome=code).inc()
    return error_response(status, code, message, fields=[FieldError("body", message)])


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
        texts = {"id": event.event_id, "type": event.raw_type, "message id": event.message_id,
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


async def _rejected(
    pool: AsyncConnectionPool,
    request: Request,
    provider: str,
    client_id: UUID,
    body: bytes,
    reason: str,
) -> JSONResponse:
    """Keep a verified body we cannot use, and answer 400."""
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
    return _refused(provider, 400, "malformed_webhook", reason)


async def _receive(request: Request, provider: str, client_id: UUID | None) -> JSONResponse:
    config: WebhookConfig = request.app.state.webhook_config
    pool: AsyncConnectionPool = request.app.state.webhook_pool
    body = await request.body()
    check, parse = _verifier(provider, request, body, config)
    candidates = await _candidates(pool, provider, client_id)
    reason = "no client has webhook credentials for this provider"
    matched: _Candidate | None = None
    for candidate in candidates:
        try:
            check(candidate.delivery)
        except WebhookRejected as exc:
            reason = exc.reason
            continue
        except ProviderConfigError as exc:
            reason = f"this client's webhook key cannot be used: {exc}"
            continue
        matched = candidate
        break
    if matched is None:
        return _refused(provider, 401, "invalid_signature", reason)
    try:
        events = _usable_events(body, parse)
    except WebhookMalformed as exc:
        return await _rejected(pool, request, provider, matched.client_id, body, exc.reason)
    # Events are stored once per provider event id and applied in one transaction, so
    # repeating it, even after a COMMIT whose answer was lost, has no second effect.
    outcome = await run_transaction(
        pool,
        lambda conn: ingest_events(conn, matched.client_id, provider, events),
        retry_at_commit=True,
    )
    WEBHOOK_REQUESTS.labels(provider=provider, outcome="accepted").inc()
    for result, count in (
        ("stored", outcome.stored),
        ("duplicate", outcome.duplicates),
        ("unmatched", outcome.unmatched),
    ):
        if count:
            WEBHOOK_EVENTS.labels(provider=provider, result=result).inc(count)
    answer: dict[str, Any] = {
        "received": len(events),
        "duplicates": outcome.duplicates,
        "unmatched": outcome.unmatched,
        "changed": outcome.changed,
    }
    return JSONResponse(answer)


def _unknown(provider: str) -> JSONResponse:
    return error_response(
        404,
        "unknown_provider",
        f"no webhook receiver for {provider!r}: use one of {', '.join(PROVIDERS)}",
        fields=[FieldError("provider", "unknown")],
    )


@router.post("/webhooks/{provider}/{client_id}", include_in_schema=True)
async def client_webhook(request: Request, provider: str, client_id: str) -> JSONResponse:
    """A provider's delivery events for one client (the URL to register)."""
    if provider not in PROVIDERS:
        return _unknown(provider)
    try:
        cid = UUID(client_id)
    except ValueError:
        return error_response(
            404,
            "unknown_client",
            "the path's client id is not a UUID",
            fields=[FieldError("client_id", "not a UUID")],
        )
    return await _receive(request, provider, cid)


@router.post("/webhooks/{provider}")
async def shared_webhook(request: Request, provider: str) -> JSONResponse:
    """A provider's delivery events, the client found by whose secret signed them."""
    if provider not in PROVIDERS:
        return _unknown(provider)
    return await _receive(request, provider, None)
