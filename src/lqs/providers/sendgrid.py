"""SendGrid (email): ``POST /v3/mail/send``; 202 with the message id in ``X-Message-Id``.

SendGrid has no idempotency key. The communication id travels in ``custom_args`` (copied
into every delivery event), but a crash between SendGrid's 202 and our record can send a
message twice: the window is one HTTP answer long, and ``docs/ARCHITECTURE.md`` says so.
"""

from __future__ import annotations

from typing import Any

import httpx

from lqs.domain.delivery import SendGridSettings
from lqs.providers.base import (
    OutboundMessage,
    ProviderConfigError,
    SendResult,
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
        custom_args = {"communication_id": str(message.communication_id), **message.metadata}
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
        """POST the email; the external id is the ``X-Message-Id`` header."""
        try:
            body = self.request_body(settings, message)
        except ProviderConfigError as exc:
            return refused("invalid_message", str(exc))
        try:
            response = await self._http.post(
                settings.base_url.rstrip("/") + "/v3/mail/send",
                json=body,
                headers={"Authorization": f"Bearer {settings.api_key.get_secret_value()}"},
            )
        except httpx.HTTPError as exc:
            return transport_failure(exc)
        return classify_status(
            response,
            error_code=None if response.is_success else f"http_{response.status_code}",
            error_message=_error_text(response),
            external_id=response.headers.get("x-message-id"),
        )


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
