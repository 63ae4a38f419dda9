"""SendGrid (email): ``POST /v3/mail/send``; 202 with the message id in ``X-Message-Id``.

SendGrid has no idempotency key. The communication id travels in ``custom_args`` (copied
into every delivery event), but a crash between SendGrid's 202 and our record can send a
message twice: the window is one HTTP answer long, and ``docs/ARCHITECTURE.md`` says so.

Event webhooks are signed with ECDSA P-256: :func:`verify` checks the signature with the
endpoint's public key (:func:`verify_webhook`), and :func:`parse` turns the JSON array into
:class:`DeliveryEvent` values (``event_id`` = ``sg_event_id``; SendGrid repeats events).
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from functools import lru_cache, partial
from typing import Any, ClassVar

import httpx
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from lqs.domain.delivery import DeliverySettings, SendGridSettings
from lqs.domain.events import DeliveryEvent, EventKind
from lqs.providers.base import (
    InboundRequest,
    OutboundMessage,
    ProviderConfigError,
    SendResult,
    WebhookMalformed,
    WebhookRejected,
    check_timestamp,
    classify_status,
    communication_id_in,
    key_verifier,
    lenient_event,
    lowercase_headers,
    optional_text,
    required_header,
    webhook_json,
)
from lqs.providers.email_api import EmailProvider

COMMUNICATION_ID_ARG = "communication_id"
"""The ``custom_args`` key that carries our communication id (SendGrid copies it into
every event of the message as a top-level key)."""

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


class SendGridProvider(EmailProvider[SendGridSettings]):
    """Sends email through SendGrid's v3 Mail Send API (or the simulator)."""

    name: ClassVar[str] = "sendgrid"
    channel: ClassVar[str] = SendGridSettings.channel
    idempotent: ClassVar[bool] = False
    send_path: ClassVar[str] = "/v3/mail/send"

    def fields(self, settings: SendGridSettings, message: OutboundMessage) -> dict[str, Any]:
        # The communication id is what delivery events are matched by: nothing overrides it.
        custom_args = {**message.metadata, COMMUNICATION_ID_ARG: str(message.communication_id)}
        return {
            "personalizations": [{"to": [{"email": message.recipient}]}],
            "from": {"email": settings.from_address},
            "subject": message.subject,
            "content": [{"type": "text/html", "value": message.content}],
            "custom_args": custom_args,
        }

    def classify(self, response: httpx.Response) -> SendResult:
        """The external id is the ``X-Message-Id`` header."""
        result = classify_status(
            response,
            error_code=None if response.is_success else f"http_{response.status_code}",
            error_message=_error_text(response),
            external_id=response.headers.get("x-message-id"),
        )
        return _with_rate_limit(result, response)


def _with_rate_limit(result: SendResult, response: httpx.Response) -> SendResult:
    """``result`` with SendGrid's own rate-limit headers applied: ``X-RateLimit-Remaining:
    0`` means the limit is used up, and ``X-RateLimit-Reset`` (Unix time) is when it
    resets, for a 429 that carries no ``Retry-After``."""
    exhausted = response.headers.get("x-ratelimit-remaining", "").strip() == "0"
    if not (exhausted or result.rate_limited):
        return result
    retry_after = result.retry_after
    if retry_after is None:
        try:
            reset = float(response.headers.get("x-ratelimit-reset", ""))
        except ValueError:
            pass
        else:
            retry_after = max(0.0, reset - time.time())
    return replace(result, rate_limited=True, retry_after=retry_after)


def _error_text(response: httpx.Response) -> str | None:
    if response.is_success:
        return None
    try:
        errors = response.json().get("errors") or []
        parts = [
            f"{e.get('field')}: {e.get('message')}" if e.get("field") else str(e.get("message"))
            for e in errors
            if isinstance(e, dict)
        ]
    except (ValueError, AttributeError):
        parts = []
    detail = "; ".join(parts) or response.text[:500] or "no details"
    return f"sendgrid {response.status_code}: {detail}"


_KINDS = {
    "processed": EventKind.ACCEPTED,
    "delivered": EventKind.DELIVERED,
    "deferred": EventKind.DELAYED,
    "bounce": EventKind.BOUNCED,  # or SOFT_BOUNCED when type is "blocked"
    "dropped": EventKind.DROPPED,
    "spamreport": EventKind.COMPLAINED,
    "unsubscribe": EventKind.UNSUBSCRIBED,
    "group_unsubscribe": EventKind.UNSUBSCRIBED,
    "open": EventKind.ENGAGED,
    "click": EventKind.ENGAGED,
}
"""The documented events; any other is parsed leniently as ``OTHER``."""

# The field that says why, per event: "reason" for bounces and drops, "response" (the
# receiving server's answer) for deferrals.
_REASON_KEYS = {"bounce": "reason", "dropped": "reason", "deferred": "response"}


def parse(request: InboundRequest) -> list[DeliveryEvent]:
    """The events of a verified webhook (:func:`parse_webhook`)."""
    return parse_webhook(request.body)


def verify_webhook(
    body: bytes,
    headers: Mapping[str, str],
    public_key: str,
    *,
    now: float | None = None,
    tolerance: float = 300.0,
) -> None:
    """Check that ``body`` was signed by SendGrid's Event Webhook with the key whose public
    half is ``public_key`` (base64 DER SubjectPublicKeyInfo, as SendGrid shows it;
    whitespace and line breaks are ignored).

    The signature (``X-Twilio-Email-Event-Webhook-Signature``, base64 DER ECDSA P-256
    SHA-256) covers the ``X-Twilio-Email-Event-Webhook-Timestamp`` value followed by the
    raw body; the timestamp may be at most ``tolerance`` seconds from ``now`` (default:
    the clock), either way. Header names are case-insensitive.

    Raises:
        WebhookRejected: a header is missing, the timestamp is out of tolerance, or the
            signature does not match.
        ProviderConfigError: ``public_key`` is not a base64 DER ECDSA P-256 public key.
    """
    key = _verification_key("".join(public_key.split()))
    found = lowercase_headers(headers)
    signature = required_header(found, SIGNATURE_HEADER)
    timestamp = required_header(found, TIMESTAMP_HEADER)
    check_timestamp(timestamp, TIMESTAMP_HEADER, now=now, tolerance=tolerance)
    try:
        decoded = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRejected("no signature matched") from None
    try:
        key.verify(decoded, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        raise WebhookRejected("no signature matched") from None


def parse_webhook(body: bytes) -> list[DeliveryEvent]:
    """The events of a verified SendGrid webhook (see :func:`verify_webhook`), in order.

    ``event_id`` is ``sg_event_id``, ``external_id`` the ``X-Message-Id`` the send returned
    (``sg_message_id`` up to its first dot), ``communication_id`` our custom arg if it is
    there and a UUID, ``occurred_at`` the event's ``timestamp`` (UTC), ``recipient`` its
    ``email``. A ``bounce`` of type ``blocked`` is ``SOFT_BOUNCED``, any other ``BOUNCED``.
    An event this module does not know is ``OTHER``, never an error.

    Raises:
        WebhookMalformed: the body is not a JSON array of objects, an element lacks
            ``sg_event_id`` or ``event``, or a known event has a mistyped field.
    """
    events = webhook_json(body)
    if not isinstance(events, list):
        raise WebhookMalformed("the body is not a JSON array")
    parsed = []
    for index, item in enumerate(events):
        where = f"event {index}: "
        if not isinstance(item, dict):
            raise WebhookMalformed(f"event {index} is not an object")
        for key in ("sg_event_id", "event"):
            value = item.get(key)
            if not isinstance(value, str) or not value:
                raise WebhookMalformed(f"event {index} has no {key}")
        event = lenient_event(
            partial(_event, item, where),
            provider="sendgrid",
            event_id=item["sg_event_id"],
            raw_type=item["event"],
            payload=item,
            known=_KINDS,
        )
        parsed.append(event)
    return parsed


def _event(item: dict[str, Any], where: str) -> DeliveryEvent:
    raw_type: str = item["event"]
    kind = _KINDS.get(raw_type, EventKind.OTHER)
    if raw_type == "bounce" and item.get("type") == "blocked":
        kind = EventKind.SOFT_BOUNCED
    # sg_message_id is "<X-Message-Id>.<suffix>": the prefix is what the send returned.
    sg_message_id = optional_text(item, "sg_message_id", where) or ""
    reason_key = _REASON_KEYS.get(raw_type)
    return DeliveryEvent(
        provider="sendgrid",
        event_id=item["sg_event_id"],
        kind=kind,
        raw_type=raw_type,
        external_id=sg_message_id.split(".", 1)[0] or None,
        occurred_at=_instant(item.get("timestamp"), where),
        communication_id=communication_id_in(item.get(COMMUNICATION_ID_ARG)),
        recipient=optional_text(item, "email", where) or None,
        reason=optional_text(item, reason_key, where) if reason_key else None,
        error_code=optional_text(item, "status", where) if raw_type == "bounce" else None,
        payload=item,
    )


def _instant(value: Any, where: str) -> datetime | None:
    """A Unix time in seconds, as an aware UTC datetime; None if absent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WebhookMalformed(f"{where}timestamp is not a number")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise WebhookMalformed(f"{where}timestamp is out of range") from None


@lru_cache(maxsize=64)
def _verification_key(compact: str) -> ec.EllipticCurvePublicKey:
    """The public key from its base64 DER text (whitespace already removed)."""
    problem = (
        "sendgrid.webhook_public_key: expected the Event Webhook's verification key "
        "(base64 of an ECDSA P-256 public key) as SendGrid shows it"
    )
    try:
        key = load_der_public_key(base64.b64decode(compact, validate=True))
    except (binascii.Error, ValueError, UnsupportedAlgorithm):
        raise ProviderConfigError(problem) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ProviderConfigError(problem)
    return key


def _public_key(settings: DeliverySettings) -> str | None:
    return settings.sendgrid.webhook_public_key if settings.sendgrid is not None else None


verify = key_verifier(
    _public_key,
    "no SendGrid verification key is configured for this client",
    verify_webhook,
)
"""Check a webhook with the client's SendGrid verification key (:func:`verify_webhook`)."""
