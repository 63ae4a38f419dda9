"""Web push (RFC 8030, 8291, 8292): an encrypted POST to the subscription's endpoint.

The payload ``{"title", "body", "communication_id"}`` is encrypted for the subscriber with
``aes128gcm`` (pywebpush's ``WebPusher.encode``) and the request is authorised with a
VAPID JWT (``py_vapid``), exactly as ``pywebpush.webpush`` builds them; only the sending
is ours, on the shared httpx client. The push service answers 201 with the message's
``Location``; 404 and 410 mean the subscription is gone and must not be used again.

The endpoint comes from whoever registered the subscription, so it is guarded like a
webhook URL (:mod:`lqs.providers.ssrf`): the host is resolved once, every address must be
public, and the request goes to the checked address itself, never following a redirect.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Mapping
from dataclasses import replace
from functools import lru_cache
from typing import Any, ClassVar

import httpx
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid, VapidException
from pywebpush import WebPusher

from lqs.domain.delivery import WebPushSettings
from lqs.providers.base import (
    OutboundMessage,
    ProviderConfigError,
    SendResult,
    classify_status,
    refused,
)
from lqs.providers.ssrf import PinnedProvider

MAX_PAYLOAD_BYTES = 4096
"""The most an encrypted push message may weigh (RFC 8291 §4: push services must accept
4096 bytes and may refuse more). With the aes128gcm header (86 bytes), the padding
delimiter and the tag (17), that leaves 3993 bytes of JSON."""

URGENCIES = frozenset({"very-low", "low", "normal", "high"})
"""The values of the ``Urgency`` header (RFC 8030 §5.3)."""

_VAPID_LIFETIME = 12 * 3600  # pywebpush's choice; RFC 8292 allows at most 24 h
# The audiences py_vapid signs: scheme, host and optional port.
_AUDIENCE = re.compile(r"^https?://[^/:]+(:\d+)?$", re.IGNORECASE)


class WebPushProvider(PinnedProvider):
    """Sends web push messages to browsers' push services (or the simulator).

    ``message.recipient`` is the subscription's endpoint; ``message.metadata`` carries
    its keys ``p256dh`` and ``auth`` (base64url) and, optionally, ``urgency``.
    Each request is bounded by the client's own timeout.
    """

    name: ClassVar[str] = "webpush"
    channel: ClassVar[str] = WebPushSettings.channel
    idempotent: ClassVar[bool] = False
    destinations: ClassVar[str] = "push endpoints"

    def payload(self, message: OutboundMessage) -> bytes:
        """The JSON the service worker receives, before encryption."""
        return json.dumps(
            {
                "title": message.subject,
                "body": message.content,
                "communication_id": str(message.communication_id),
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()

    async def send(self, settings: WebPushSettings, message: OutboundMessage) -> SendResult:
        """Encrypt, sign and POST the message; the external id is the push service's
        ``Location`` (the push message resource), when it gives one.

        Raises:
            ProviderConfigError: the VAPID private key or subject cannot be used.
        """
        vapid = _vapid(settings.vapid_private_key.get_secret_value())
        try:
            endpoint = httpx.URL(message.recipient)
        except httpx.InvalidURL:
            endpoint = None
        audience = f"{endpoint.scheme}://{endpoint.netloc.decode('ascii')}" if endpoint else ""
        if endpoint is None or not _AUDIENCE.match(audience):
            return refused(
                "invalid_subscription",
                f"push endpoint {message.recipient!r} is not an http(s) URL with a host name",
            )
        authorization = _authorization(vapid, settings.vapid_subject, audience)
        keys = _subscription_keys(message.metadata)
        if isinstance(keys, str):
            return refused("invalid_subscription", keys)
        urgency = message.metadata.get("urgency")
        if urgency is not None and urgency not in URGENCIES:
            return refused(
                "invalid_message",
                f"urgency {urgency!r} is not one of {', '.join(sorted(URGENCIES))}",
            )
        subscription = {"endpoint": message.recipient, "keys": keys}
        body: bytes = WebPusher(subscription).encode(self.payload(message), "aes128gcm")["body"]
        if len(body) > MAX_PAYLOAD_BYTES:
            return refused(
                "payload_too_large",
                f"the push message is {len(body)} bytes encrypted; push services accept "
                f"{MAX_PAYLOAD_BYTES}: shorten the subject or content",
            )
        headers = {
            "Authorization": authorization,
            "Content-Encoding": "aes128gcm",
            "TTL": str(settings.ttl),
        }
        if urgency is not None:
            headers["Urgency"] = urgency
        answer = await self._post_pinned(endpoint, body, headers)
        return answer if isinstance(answer, SendResult) else _classify(answer)


@lru_cache(maxsize=64)
def _vapid(private_key: str) -> Any:
    """The ``py_vapid`` signer for a PEM key or a base64url raw (or DER) key."""
    key: object
    try:
        if "-----BEGIN" in private_key:
            key = serialization.load_pem_private_key(private_key.strip().encode(), None)
        else:
            key = Vapid.from_string(private_key=private_key.strip()).private_key
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ProviderConfigError(
            "webpush.vapid_private_key: expected a P-256 private key, as PEM or as the "
            "base64url of its 32 raw bytes"
        )
    return Vapid(private_key=key)


def _authorization(vapid: Any, subject: str, audience: str) -> str:
    claims = {"sub": subject, "aud": audience, "exp": int(time.time()) + _VAPID_LIFETIME}
    try:
        headers: dict[str, str] = vapid.sign(claims)
    except VapidException as exc:
        # The audience was checked by the caller, so only the subject can be wrong.
        raise ProviderConfigError(
            f"webpush.vapid_subject: {subject!r} is not a mailto: address or an https URL of a host"
        ) from exc
    return headers["Authorization"]


def _subscription_keys(metadata: Mapping[str, str]) -> dict[str, str] | str:
    """The subscription's keys in unpadded base64url, or what is wrong with them."""
    if not metadata.get("p256dh") or not metadata.get("auth"):
        return "the push subscription needs its p256dh and auth keys (base64url)"
    p256dh = _base64url(metadata["p256dh"])
    auth = _base64url(metadata["auth"])
    if p256dh is None or auth is None:
        return "the push subscription's keys are not base64url"
    if not _is_uncompressed_p256_point(p256dh):
        return "the push subscription's p256dh is not an uncompressed P-256 public key"
    if len(auth) != 16:
        return f"the push subscription's auth secret is {len(auth)} bytes, not 16"
    return {
        "p256dh": base64.urlsafe_b64encode(p256dh).rstrip(b"=").decode(),
        "auth": base64.urlsafe_b64encode(auth).rstrip(b"=").decode(),
    }


def _is_uncompressed_p256_point(raw: bytes) -> bool:
    # RFC 8291 §3.1: the subscriber's key is an uncompressed point, 65 bytes from 0x04.
    if len(raw) != 65 or raw[0] != 4:
        return False
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError:
        return False
    return True


def _base64url(value: str) -> bytes | None:
    # Browsers give unpadded base64url; padded or standard base64 is accepted too.
    text = value.strip().rstrip("=").replace("+", "-").replace("/", "_")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def _classify(response: httpx.Response) -> SendResult:
    status = response.status_code
    if status in (404, 410):
        gone = classify_status(
            response,
            error_code="subscription_gone",
            error_message=f"HTTP {status}: the push subscription is gone; do not use it again",
        )
        return replace(gone, recipient_gone=True)
    if status == 413:
        return classify_status(
            response,
            error_code="payload_too_large",
            error_message="HTTP 413: the push service refused the payload as too large",
        )
    reason = _reason(response)
    return classify_status(
        response,
        error_message=f"HTTP {status}: {reason}" if reason else None,
        external_id=response.headers.get("location"),
    )


def _reason(response: httpx.Response) -> str | None:
    """What the push service said was wrong (Apple: ``reason``, Mozilla: ``message``)."""
    if response.is_success or not response.content:
        return None
    try:
        data = response.json()
    except ValueError:
        return response.text[:200].strip() or None
    if isinstance(data, Mapping):
        for key in ("reason", "message", "error"):
            if data.get(key):
                return str(data[key])[:200]
    return None
