"""Resend (email): ``POST /emails`` with the communication id as ``Idempotency-Key``.

Resend keeps an idempotency key for 24 hours: a retry with the same key and payload
returns the first answer and sends nothing, so a crash between Resend's 200 and our
record cannot send twice as long as every retry happens inside that window (the default
retry horizon ends at 23 h). 409 ``concurrent_idempotent_requests`` (the first request
with the key is still in flight) is transient, retried no sooner than
:data:`CONCURRENT_REQUEST_WAIT`; 409 ``invalid_idempotent_request`` (same
key, different payload) is permanent.

Several emails of one client go out in one ``POST /emails/batch``
(:meth:`ResendProvider.send_batch`, at most :data:`MAX_BATCH`), under a key derived from
the members, replayed verbatim by their retries.

Delivery webhooks are signed by Svix: :func:`verify` checks the ``svix-*`` headers against
the endpoint's ``whsec_`` secret (:func:`verify_webhook`), and :func:`parse` turns the event
into a :class:`DeliveryEvent` whose ``event_id`` is ``svix-id`` (stable across Svix's
retries).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, ClassVar
from uuid import UUID

import httpx

from lqs.domain.delivery import DeliverySettings, ResendSettings, Verdict
from lqs.domain.events import DeliveryEvent, EventKind
from lqs.providers.base import (
    InboundRequest,
    OutboundMessage,
    ProviderConfigError,
    SendResult,
    WebhookMalformed,
    WebhookRejected,
    answer_fields,
    bearer,
    check_timestamp,
    classify_status,
    communication_id_in,
    key_verifier,
    lenient_event,
    lowercase_headers,
    optional_text,
    parse_retry_after,
    required_header,
    unpadded_base64,
    webhook_json,
)
from lqs.providers.email_api import EmailProvider

COMMUNICATION_ID_TAG = "communication_id"
"""The tag that carries our communication id on every email (and back in its events)."""

_TRANSIENT_CODES = frozenset(
    {"concurrent_idempotent_requests", "rate_limit_exceeded", "application_error",
     "internal_server_error"}
)  # fmt: skip


CONCURRENT_REQUEST_WAIT = 1.0
"""Seconds to wait at least before retrying after 409 ``concurrent_idempotent_requests``
(the first request with the key is still in progress at Resend, say one our timeout
abandoned): retried at once, the retries meet the same answer and use up the message's
retries while the original may still succeed."""


def _wait_for_the_original(result: SendResult) -> SendResult:
    if result.error_code == "concurrent_idempotent_requests" and result.retry_after is None:
        return replace(result, retry_after=CONCURRENT_REQUEST_WAIT)
    return result


_TAG_FORBIDDEN = re.compile(r"[^A-Za-z0-9_-]")


def _tag(value: str) -> str:
    # Tag names and values allow ASCII letters, digits, "_" and "-" only, 256 at most.
    # (A regex: the per-character version cost 7% of a batch send's CPU.)
    return _TAG_FORBIDDEN.sub("_", value[:256])


MAX_BATCH = 100
"""The most emails one ``POST /emails/batch`` may carry."""


class ResendProvider(EmailProvider[ResendSettings]):
    """Sends email through Resend's REST API (or anything speaking it, like the simulator)."""

    name: ClassVar[str] = "resend"
    channel: ClassVar[str] = ResendSettings.channel
    idempotent: ClassVar[bool] = True
    max_batch: ClassVar[int] = MAX_BATCH
    send_path: ClassVar[str] = "/emails"

    def fields(self, settings: ResendSettings, message: OutboundMessage) -> dict[str, Any]:
        return {
            "from": settings.from_address,
            "to": [message.recipient],
            "subject": message.subject,
            "html": message.content,
            "tags": [
                {"name": COMMUNICATION_ID_TAG, "value": str(message.communication_id)},
                *(
                    {"name": _tag(k), "value": _tag(v)}
                    for k, v in message.metadata.items()
                    if k != COMMUNICATION_ID_TAG
                ),
            ],
        }

    def message_headers(self, message: OutboundMessage) -> dict[str, str]:
        """The communication id is the idempotency key."""
        return {"Idempotency-Key": str(message.communication_id)}

    def classify(self, response: httpx.Response) -> SendResult:
        """The external id is the answer's ``id``."""
        code, text, email_id = answer_fields(response, "resend", id_key="id", code_key="name")
        result = classify_status(
            response,
            error_code=code,
            error_message=text,
            external_id=email_id,
            transient_codes=_TRANSIENT_CODES,
        )
        if result.rate_limited and result.retry_after is None:
            # A success that used up the window carries no Retry-After; ratelimit-reset
            # says (in seconds) when the window reopens.
            result = replace(
                result, retry_after=parse_retry_after(response.headers.get("ratelimit-reset"))
            )
        return _wait_for_the_original(result)

    def batch_body(self, settings: ResendSettings, messages: list[OutboundMessage]) -> str:
        """The JSON text of a batch request: one :meth:`request_body` per message.

        Raises:
            ProviderConfigError: a message has no subject or content, or the batch holds
                more than :data:`MAX_BATCH` (or no) emails.
        """
        if not 1 <= len(messages) <= MAX_BATCH:
            raise ProviderConfigError(f"a batch holds 1 to {MAX_BATCH} emails")
        bodies = [self.request_body(settings, message) for message in messages]
        return json.dumps(bodies, separators=(",", ":"), ensure_ascii=False)

    async def send_batch(
        self, settings: ResendSettings, body: str, count: int, key: str
    ) -> list[SendResult]:
        """POST a batch (:meth:`batch_body`, ``count`` emails) to ``/emails/batch``.

        ``key`` is the batch's ``Idempotency-Key``: the same body under the same key again
        returns the first answer and sends nothing, so a retry sends ``body`` exactly as
        first sent. Validation is permissive, so one bad email fails alone. Returns one
        result per email, in order.

        Raises:
            ProviderConfigError: the API key cannot be used.
        """
        authorization = bearer(settings.api_key.get_secret_value(), "resend.api_key")
        response = await self._post(
            settings.base_url.rstrip("/") + "/emails/batch",
            content=body.encode(),
            headers={
                "Authorization": authorization,
                "Content-Type": "application/json",
                "Idempotency-Key": key,
                "x-batch-validation": "permissive",
            },
        )
        if isinstance(response, SendResult):
            return [response] * count
        code, text, _ = answer_fields(response, "resend", id_key="id", code_key="name")
        overall = _wait_for_the_original(
            classify_status(
                response, error_code=code, error_message=text, transient_codes=_TRANSIENT_CODES
            )
        )
        if not overall.accepted:
            return [overall] * count
        try:
            answer = response.json()
            ids = [str(item["id"]) for item in answer.get("data") or []]
            errors = {int(e["index"]): str(e.get("message")) for e in answer.get("errors") or []}
        except (ValueError, KeyError, TypeError, AttributeError):
            ids, errors = [], {}
        if len(ids) + len(errors) != count:
            # An answer we cannot map to the emails: retry the same batch (same key).
            return [
                SendResult(
                    Verdict.TRANSIENT,
                    response.status_code,
                    response=overall.response,
                    error_code="unreadable_batch_answer",
                    error_message=f"resend batch answer lists {len(ids)} ids and "
                    f"{len(errors)} errors for {count} emails",
                )
            ] * count
        accepted = iter(ids)
        results = []
        for index in range(count):
            if index in errors:
                results.append(
                    SendResult(
                        Verdict.PERMANENT,
                        response.status_code,
                        error_code="validation_error",
                        error_message=f"resend batch email {index}: {errors[index]}",
                    )
                )
                continue
            email_id = next(accepted)
            results.append(
                SendResult(
                    Verdict.ACCEPTED,
                    response.status_code,
                    external_id=email_id,
                    response={"id": email_id, "batch": key},
                    rate_limited=overall.rate_limited,
                    retry_after=overall.retry_after,
                )
            )
        return results


_KINDS = {
    "email.sent": EventKind.ACCEPTED,
    "email.delivered": EventKind.DELIVERED,
    "email.delivery_delayed": EventKind.DELAYED,
    "email.bounced": EventKind.BOUNCED,  # or SOFT_BOUNCED: see _bounce_kind
    "email.complained": EventKind.COMPLAINED,
    "email.failed": EventKind.FAILED,
    "email.suppressed": EventKind.DROPPED,
    "email.opened": EventKind.ENGAGED,
    "email.clicked": EventKind.ENGAGED,
    "email.scheduled": EventKind.OTHER,
}
"""The documented email events; any other type is parsed leniently as ``OTHER``."""


def parse(request: InboundRequest) -> list[DeliveryEvent]:
    """The event of a verified webhook (:func:`parse_webhook`)."""
    return parse_webhook(request.body, request.headers)


def verify_webhook(
    body: bytes,
    headers: Mapping[str, str],
    secret: str,
    *,
    now: float | None = None,
    tolerance: float = 300.0,
) -> None:
    """Check that ``body`` was signed by Svix with ``secret`` (``whsec_`` + base64).

    The signature is HMAC-SHA256 over ``{svix-id}.{svix-timestamp}.{body}``, the raw bytes
    as received; ``svix-signature`` holds space-separated ``v1,<base64>`` entries (several
    while a secret is rotated) and one matching ``v1`` entry suffices; other versions are
    ignored. ``svix-timestamp`` may be at most ``tolerance`` seconds from ``now`` (default:
    the clock), either way. Header names are case-insensitive.

    Raises:
        WebhookRejected: a header is missing, the timestamp is out of tolerance, or no
            signature matched.
        ProviderConfigError: ``secret`` is not ``whsec_`` followed by base64.
    """
    key = _signing_key(secret)
    found = lowercase_headers(headers)
    message_id = required_header(found, "svix-id")
    timestamp = required_header(found, "svix-timestamp")
    signatures = required_header(found, "svix-signature")
    check_timestamp(timestamp, "svix-timestamp", now=now, tolerance=tolerance)
    signed = f"{message_id}.{timestamp}.".encode("utf-8", "surrogatepass") + body
    expected = hmac.new(key, signed, hashlib.sha256).digest()
    for entry in signatures.split():
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue
        try:
            candidate = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(expected, candidate):
            return
    raise WebhookRejected("no signature matched")


def parse_webhook(body: bytes, headers: Mapping[str, str]) -> list[DeliveryEvent]:
    """The event of a verified Resend webhook (see :func:`verify_webhook`), as a list of one.

    ``event_id`` is ``svix-id``, ``external_id`` ``data.email_id`` (the id the send returned),
    ``occurred_at`` the event's ``created_at``, ``recipient`` the first of ``data.to`` and
    ``communication_id`` our tag if the event carries it. A bounce is ``BOUNCED`` when
    ``data.bounce.type`` is ``Permanent``, else ``SOFT_BOUNCED``. A type this module does
    not know is ``OTHER``, never an error.

    Raises:
        WebhookMalformed: the body is not a JSON object with a string ``type``, or a known
            event lacks its documented fields (``data.email_id``) or has them mistyped.
    """
    event_id = lowercase_headers(headers).get("svix-id", "").strip()
    if not event_id:
        raise WebhookMalformed("missing header svix-id")
    envelope = webhook_json(body)
    if not isinstance(envelope, dict):
        raise WebhookMalformed("the body is not a JSON object")
    raw_type = envelope.get("type")
    if not isinstance(raw_type, str) or not raw_type:
        raise WebhookMalformed("type is missing or not a string")
    event = lenient_event(
        partial(_event, event_id, raw_type, envelope),
        provider="resend",
        event_id=event_id,
        raw_type=raw_type,
        payload=envelope,
        known=_KINDS,
    )
    return [event]


def _event(event_id: str, raw_type: str, envelope: dict[str, Any]) -> DeliveryEvent:
    kind = _KINDS.get(raw_type, EventKind.OTHER)
    data = envelope.get("data")
    if not isinstance(data, dict):
        raise WebhookMalformed("data is missing or not an object")
    external_id = optional_text(data, "email_id", "data.") or None
    if external_id is None and raw_type in _KINDS:
        raise WebhookMalformed("data.email_id is missing")
    reason = error_code = None
    if raw_type == "email.bounced":
        bounce = _object(data, "bounce", "data.")
        if bounce.get("type") != "Permanent":
            kind = EventKind.SOFT_BOUNCED
        reason = optional_text(bounce, "message", "data.bounce.")
        error_code = optional_text(bounce, "subType", "data.bounce.")
    elif raw_type == "email.failed":
        reason = optional_text(_object(data, "failed", "data."), "reason", "data.failed.")
    return DeliveryEvent(
        provider="resend",
        event_id=event_id,
        kind=kind,
        raw_type=raw_type,
        external_id=external_id,
        occurred_at=_instant(envelope.get("created_at")),
        communication_id=_tagged_communication_id(data.get("tags")),
        recipient=_first_recipient(data.get("to")),
        reason=reason,
        error_code=error_code,
        payload=envelope,
    )


def _signing_key(secret: str) -> bytes:
    key = unpadded_base64("".join(secret.strip().removeprefix("whsec_").split()))
    if not key:
        raise ProviderConfigError(
            "resend.webhook_secret: expected whsec_ followed by base64 (copy it from the "
            "webhook's page in the Resend dashboard)"
        )
    return key


def _object(container: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """``container[key]`` if it is an object, ``{}`` if absent or null."""
    value = container.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebhookMalformed(f"{where}{key} is not an object")
    return value


def _instant(value: Any) -> datetime | None:
    """An ISO 8601 time (``Z`` or an offset; one without is taken as UTC), or None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise WebhookMalformed("created_at is not a string")
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise WebhookMalformed("created_at is not an ISO 8601 time") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _first_recipient(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise WebhookMalformed("data.to is not a list of addresses")
    return value[0] if value else None


def _tagged_communication_id(tags: Any) -> UUID | None:
    """Our communication id from the event's tags (``{name: value}``, or the
    ``[{name, value}]`` the send used), or None."""
    if isinstance(tags, dict):
        return communication_id_in(tags.get(COMMUNICATION_ID_TAG))
    if isinstance(tags, list):
        for tag in tags:
            if isinstance(tag, dict) and tag.get("name") == COMMUNICATION_ID_TAG:
                return communication_id_in(tag.get("value"))
    return None


def _webhook_secret(settings: DeliverySettings) -> str | None:
    found = settings.resend.webhook_secret if settings.resend is not None else None
    return found.get_secret_value() if found is not None else None


verify = key_verifier(
    _webhook_secret, "no Resend webhook secret is configured for this client", verify_webhook
)
"""Check a webhook with the client's Resend signing secret (:func:`verify_webhook`)."""
