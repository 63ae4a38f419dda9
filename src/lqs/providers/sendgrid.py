"""SendGrid (email): ``POST /v3/mail/send``; 202 with the message id in ``X-Message-Id``.

SendGrid has no idempotency key. The communication id travels in ``custom_args`` (copied
into every delivery event), but a crash between SendGrid's 202 and our record can send a
message twice: the window is one HTTP answer long, and ``docs/ARCHITECTURE.md`` says so.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import httpx

from lqs.domain.delivery import SendGridSettings
from lqs.providers.base import (
    OutboundMessage,
    ProviderConfigError,
    SendResult,
    bearer,
    classify_status,
    refused,
    transport_failure,
)


class SendGridProvider:
    """Sends email through SendGrid's v3 Mail Send API (or the simulator)."""

    name = "sendgrid"
    channel = "email"

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    def request_body(self, settings: SendGridSettings, message: OutboundMessage) -> dict[str, Any]:
        """The JSON SendGrid receives for ``message``."""
        if message.content is None or message.subject is None:
            raise ProviderConfigError("an email needs a subject and content")
        # The communication id is what delivery events are matched by: nothing overrides it.
        custom_args = {**message.metadata, "communication_id": str(message.communication_id)}
        body: dict[str, Any] = {
            "personalizations": [{"to": [{"email": message.recipient}]}],
            "from": {"email": settings.from_address},
            "subject": message.subject,
            "content": [{"type": "text/html", "value": message.content}],
            "custom_args": custom_args,
        }
        if message.headers:
            body["headers"] = dict(message.headers)
        return body

    async def send(self, settings: SendGridSettings, message: OutboundMessage) -> SendResult:
        """POST the email; the external id is the ``X-Message-Id`` header.

        Raises:
            ProviderConfigError: the API key cannot be used.
        """
        authorization = bearer(settings.api_key.get_secret_value(), "sendgrid.api_key")
        if not message.subject or not message.content:
            # SendGrid refuses an empty subject or content value with a 400 anyway.
            return refused("invalid_message", "an email needs a subject and content")
        try:
            body = self.request_body(settings, message)
        except ProviderConfigError as exc:
            return refused("invalid_message", str(exc))
        try:
            response = await self._http.post(
                settings.base_url.rstrip("/") + "/v3/mail/send",
                json=body,
                headers={"Authorization": authorization},
            )
        except httpx.HTTPError as exc:
            return transport_failure(exc)
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
