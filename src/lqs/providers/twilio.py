"""Twilio (SMS): form-encoded ``POST /2010-04-01/Accounts/{sid}/Messages.json``.

Twilio documents no idempotency key, so a crash between Twilio's 201 and our record can
send an SMS twice; the window is one HTTP answer long (``docs/ARCHITECTURE.md``). The
status callback URL, if configured, makes Twilio report delivery to our webhook.
"""

from __future__ import annotations

import httpx

from lqs.domain.delivery import TwilioSettings
from lqs.providers.base import (
    OutboundMessage,
    SendResult,
    answer_fields,
    classify_status,
    refused,
    transport_failure,
)

MAX_BODY = 1600
"""Twilio's limit on a message body, in characters."""

# Twilio error codes that mean "try again later" although the status is a 4xx.
_TRANSIENT_CODES = frozenset({"20429", "14107", "30001"})


class TwilioProvider:
    """Sends SMS through Twilio's Messages API (or the simulator)."""

    name = "twilio"
    channel = "sms"

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    def form(self, settings: TwilioSettings, message: OutboundMessage) -> dict[str, str]:
        """The form fields Twilio receives for ``message``."""
        form = {"To": message.recipient, "Body": message.content or ""}
        if settings.messaging_service_sid is not None:
            form["MessagingServiceSid"] = settings.messaging_service_sid
        else:
            assert settings.from_number is not None  # the settings model requires one
            form["From"] = settings.from_number
        if settings.status_callback_url is not None:
            form["StatusCallback"] = settings.status_callback_url
        return form

    async def send(self, settings: TwilioSettings, message: OutboundMessage) -> SendResult:
        """POST the message; the external id is the message ``sid`` (``SM…``)."""
        if not message.content:
            return refused("invalid_message", "an SMS needs a body")
        if len(message.content) > MAX_BODY:
            return refused("invalid_message", f"an SMS body is at most {MAX_BODY} characters")
        url = (
            f"{settings.base_url.rstrip('/')}/2010-04-01/Accounts/"
            f"{settings.account_sid}/Messages.json"
        )
        try:
            response = await self._http.post(
                url,
                data=self.form(settings, message),
                auth=(settings.account_sid, settings.auth_token.get_secret_value()),
            )
        except httpx.HTTPError as exc:
            return transport_failure(exc)
        code, text, sid = answer_fields(response, "twilio", id_key="sid", code_key="code")
        return classify_status(
            response,
            error_code=code,
            error_message=text,
            external_id=sid,
            transient_codes=_TRANSIENT_CODES,
        )
