"""Outbound webhooks: a JSON event POSTed to the tenant's URL, signed per Standard Webhooks.

The body is ``{"type", "timestamp", "data"}``; the headers ``webhook-id`` (the
communication id, so a retry carries the same id and the receiver can drop duplicates),
``webhook-timestamp`` and ``webhook-signature`` (``v1,`` + base64 HMAC-SHA256 of
``{id}.{timestamp}.{body}``, the algorithm Svix uses).

The URL is the tenant's, so it is treated as hostile: the host is resolved once, every
address it resolves to must be public (:mod:`lqs.providers.ssrf`), and the request goes to
the checked address itself. Redirects are never followed (a 3xx fails the message), the
answer's status must arrive within the timeout, and no more of its body than
:data:`MAX_RESPONSE_BYTES` is read.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import ClassVar, Self

import httpx
from standardwebhooks.webhooks import Webhook

from lqs.domain.delivery import WebhookSettings
from lqs.providers.base import (
    AdapterOptions,
    ClientFactory,
    OutboundMessage,
    ProviderConfigError,
    SendResult,
    classify_status,
    refused,
    transport_failure,
    unpadded_base64,
)
from lqs.providers.ssrf import PinnedProvider

MAX_RESPONSE_BYTES = 64 * 1024
"""How much of a receiver's answer is read; the rest is dropped unread."""

_SECRET_BYTES = range(24, 65)
# Response headers that describe the body as sent, not the cut body we keep.
_BODY_FRAMING = frozenset({"content-encoding", "content-length", "transfer-encoding"})


class WebhookProvider(PinnedProvider):
    """Posts signed events to tenants' webhook URLs (``timeout`` bounds each whole answer)."""

    name: ClassVar[str] = "webhook"
    channel: ClassVar[str] = WebhookSettings.channel
    idempotent: ClassVar[bool] = False
    accepted_is_delivered: ClassVar[bool] = True
    """The receiver is the recipient: its 2xx is the delivery (no event follows)."""
    destinations: ClassVar[str] = "webhook URLs"

    @classmethod
    def build(cls, clients: ClientFactory, options: AdapterOptions) -> Self:
        built = super().build(clients, options)
        built._timeout = options.timeout
        return built

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        timeout: float = 15.0,
        allow_private: bool = False,
        allowed_hosts: Iterable[str] = (),
    ) -> None:
        super().__init__(http, allow_private=allow_private, allowed_hosts=allowed_hosts)
        self._timeout = timeout

    def request_body(self, message: OutboundMessage, when: datetime) -> str:
        """The JSON event for ``message``: its type is ``metadata["event_type"]``
        (default ``"communication"``); the other metadata keys join ``data``."""
        metadata = {k: v for k, v in message.metadata.items() if k != "event_type"}
        event = {
            "type": message.metadata.get("event_type", "communication"),
            "timestamp": when.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "data": {
                **metadata,
                "communication_id": str(message.communication_id),
                "lead_id": str(message.lead_id),
                "client_id": str(message.client_id),
                "subject": message.subject,
                "content": message.content,
            },
        }
        return json.dumps(event, ensure_ascii=False, separators=(",", ":"))

    async def send(self, settings: WebhookSettings, message: OutboundMessage) -> SendResult:
        """POST the signed event to ``message.recipient`` (``settings.url`` if empty).

        Raises:
            ProviderConfigError: the secret is not ``whsec_`` + base64 of 24 to 64 bytes.
        """
        key = signing_key(settings.secret.get_secret_value())
        target = message.recipient or settings.url
        try:
            url = httpx.URL(target)
        except httpx.InvalidURL as exc:
            return refused("invalid_url", f"webhook URL {target!r} is not a URL: {exc}")
        if url.scheme not in ("http", "https") or not url.raw_host:
            return refused("invalid_url", f"webhook URL {target!r} is not an http(s) URL")
        when = datetime.now(UTC)
        body = self.request_body(message, when)
        headers = {
            "Content-Type": "application/json",
            # Only the raw bytes are read (and at most MAX_RESPONSE_BYTES of them).
            "Accept-Encoding": "identity",
            **signature_headers(key, str(message.communication_id), when, body),
        }
        response: httpx.Response | None = None
        received = bytearray()
        try:
            async with asyncio.timeout(self._timeout):
                opened = await self._post_pinned(
                    url, body.encode(), headers, request_timeout=self._timeout, stream=True
                )
                if isinstance(opened, SendResult):
                    return opened
                response = opened
                if response.is_stream_consumed:  # a transport that reads ahead (a mock)
                    received += response.content
                else:
                    async for chunk in response.aiter_raw():
                        received += chunk
                        if len(received) >= MAX_RESPONSE_BYTES:
                            break
        except (TimeoutError, httpx.HTTPError) as exc:
            # Once the status line is in, it is the receiver's answer: a body cut short by
            # the deadline or a dropped connection loses only what we keep for the record.
            if response is None:
                if isinstance(exc, httpx.HTTPError):
                    return transport_failure(exc)
                return transport_failure(
                    httpx.TimeoutException(f"no answer within {self._timeout:g} s")
                )
        finally:
            if response is not None:
                await response.aclose()
        assert response is not None
        return _classify(_cut(response, bytes(received[:MAX_RESPONSE_BYTES])))


def signing_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret (the prefix is optional).

    Raises:
        ProviderConfigError: the rest is not base64 of 24 to 64 bytes.
    """
    key = unpadded_base64(secret.removeprefix("whsec_"))
    if len(key) not in _SECRET_BYTES:
        raise ProviderConfigError(
            "webhook.secret: expected whsec_ followed by the base64 of 24 to 64 random bytes"
        )
    return key


def signature_headers(key: bytes, message_id: str, when: datetime, body: str) -> dict[str, str]:
    """The Standard Webhooks headers that sign ``body`` as message ``message_id`` sent at
    ``when`` (whole seconds)."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(key).sign(message_id, when.astimezone(UTC), body),
    }


def _cut(response: httpx.Response, head: bytes) -> httpx.Response:
    """``response`` with ``head`` as its whole body, for classification."""
    headers = [(k, v) for k, v in response.headers.multi_items() if k not in _BODY_FRAMING]
    return httpx.Response(
        response.status_code, headers=headers, content=head, request=response.request
    )


def _classify(response: httpx.Response) -> SendResult:
    status = response.status_code
    if 300 <= status < 400:
        location = response.headers.get("location")
        return classify_status(
            response,
            error_code="redirect",
            error_message=(
                f"HTTP {status}: redirects are not followed"
                + (f" (Location: {location})" if location else "")
                + "; set the webhook URL to the final address"
            ),
        )
    if status == 410:
        gone = classify_status(
            response,
            error_code="endpoint_gone",
            error_message="HTTP 410: the receiver disabled this endpoint",
        )
        return replace(gone, recipient_gone=True)
    return classify_status(response)
