"""Resend (email): ``POST /emails`` with the communication id as ``Idempotency-Key``.

Resend keeps an idempotency key for 24 hours: a retry with the same key and payload
returns the first answer and sends nothing, so a crash between Resend's 200 and our
record cannot send twice as long as every retry happens inside that window (the default
retry horizon ends at 23 h). 409 ``concurrent_idempotent_requests`` (the first request
with the key is still in flight) is transient; 409 ``invalid_idempotent_request`` (same
key, different payload) is permanent.
"""

from __future__ import annotations

from typing import Any

import httpx

from lqs.domain.delivery import ResendSettings
from lqs.providers.base import (
    OutboundMessage,
    ProviderConfigError,
    SendResult,
    classify_status,
    refused,
    transport_failure,
)

_TRANSIENT_CODES = frozenset(
    {"concurrent_idempotent_requests", "rate_limit_exceeded", "application_error",
     "internal_server_error"}
)  # fmt: skip


def _tag(value: str) -> str:
    # Tag values allow ASCII letters, digits, "_" and "-" only.
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "_-") else "_" for ch in value)


class ResendProvider:
    """Sends email through Resend's REST API (or anything speaking it, like the simulator)."""

    name = "resend"
    channel = "email"

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    def request_body(self, settings: ResendSettings, message: OutboundMessage) -> dict[str, Any]:
        """The JSON Resend receives for ``message``."""
        if message.content is None or message.subject is None:
            raise ProviderConfigError("an email needs a subject and content")
        body: dict[str, Any] = {
            "from": settings.from_address,
            "to": [message.recipient],
            "subject": message.subject,
            "html": message.content,
            "tags": [
                {"name": "communication_id", "value": str(message.communication_id)},
                *({"name": _tag(k), "value": _tag(v)} for k, v in message.metadata.items()),
            ],
        }
        if message.headers:
            body["headers"] = dict(message.headers)
        return body

    async def send(self, settings: ResendSettings, message: OutboundMessage) -> SendResult:
        """POST the email; the communication id is the idempotency key."""
        try:
            body = self.request_body(settings, message)
        except ProviderConfigError as exc:
            return refused("invalid_message", str(exc))
        try:
            response = await self._http.post(
                settings.base_url.rstrip("/") + "/emails",
                json=body,
                headers={
                    "Authorization": f"Bearer {settings.api_key.get_secret_value()}",
                    "Idempotency-Key": str(message.communication_id),
                },
            )
        except httpx.HTTPError as exc:
            return transport_failure(exc)
        code, text, email_id = _error_fields(response)
        return classify_status(
            response,
            error_code=code,
            error_message=text,
            external_id=email_id,
            transient_codes=_TRANSIENT_CODES,
        )


def _error_fields(response: httpx.Response) -> tuple[str | None, str | None, str | None]:
    try:
        data = response.json()
    except ValueError:
        return None, None, None
    if not isinstance(data, dict):
        return None, None, None
    if response.is_success:
        email_id = data.get("id")
        return None, None, str(email_id) if email_id else None
    name = data.get("name")
    message = data.get("message")
    text = f"resend {response.status_code} {name}: {message}" if name or message else None
    return (str(name) if name else None), text, None
