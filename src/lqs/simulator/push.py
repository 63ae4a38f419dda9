"""Web push: ``POST /push/{subscription_id}``, answered as a push service (RFC 8030) does.

The subscription's endpoint is ``{base_url}/push/{subscription_id}``. Checks, in order:
unknown subscription (404), VAPID ``Authorization: vapid t=<JWT>, k=<key>`` (401: shape
always; signature, ``aud``, ``exp`` and ``sub`` when ``verify_vapid``), latency and injected
faults, gone subscription (410), ``TTL`` header (400), payload size (413), ``aes128gcm``
framing (400), ``Urgency`` and ``Topic`` (400). An accepted message is recorded and answered
201 with an empty body, a ``Location`` for the message and the ``TTL`` kept. Error bodies
follow Mozilla autopush: ``{"code", "errno", "error", "message", "more_info"}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from uuid import uuid4

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lqs.simulator.config import PushConfig
from lqs.simulator.exchange import Exchange, provider_endpoint
from lqs.simulator.numbers import ascii_number
from lqs.simulator.records import MessageRecord

_MORE_INFO = "http://autopush.readthedocs.io/en/latest/http.html#error-codes"
_URGENCIES = frozenset({"very-low", "low", "normal", "high"})
_TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_MAX_VAPID_LIFETIME = 24 * 3600
_CLOCK_SKEW = 60
# aes128gcm (RFC 8188): salt(16) | record size(4) | key id length(1) | key id | ciphertext,
# and the ciphertext holds at least the padding delimiter and the 16-byte tag.
_SALT_AND_RS = 20
_MIN_CIPHERTEXT = 17


def error_response(status: int, errno: int | None, message: str) -> JSONResponse:
    """The push service's error body, in autopush's shape."""
    response = JSONResponse(
        {
            "code": status,
            "errno": errno,
            "error": HTTPStatus(status).phrase,
            "message": message,
            "more_info": _MORE_INFO,
        },
        status,
    )
    if status == 410:
        response.headers["Cache-Control"] = "max-age=86400"
    return response


def fault_error(status: int) -> Response:
    """The push service's answer for an injected error ``status``."""
    return error_response(status, None, HTTPStatus(status).phrase)


@dataclass(frozen=True)
class VapidIdentity:
    """The sender a VAPID header proves: its JWT claims and its public key (base64url)."""

    claims: dict[str, Any]
    public_key: str


class VapidError(ValueError):
    """Raised when a VAPID ``Authorization`` header is missing, malformed or does not verify."""


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check_vapid(authorization: str | None, origin: str, config: PushConfig) -> VapidIdentity:
    """Check a ``vapid t=…, k=…`` header (RFC 8292) sent to a push service at ``origin``.

    Raises:
        VapidError: the header is missing or malformed, or (with ``config.verify_vapid``)
            the ES256 signature, ``aud``, ``exp`` or ``sub`` is wrong, or the key is not
            one of ``config.vapid_public_keys``.
    """
    scheme, _, rest = (authorization or "").partition(" ")
    if scheme.lower() != "vapid":
        raise VapidError("Missing or unsupported Authorization scheme: expected `vapid`")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, _, value = part.strip().partition("=")
        fields[name] = value
    token, key_text = fields.get("t", ""), fields.get("k", "")
    parts = token.split(".")
    if len(parts) != 3 or not key_text:
        raise VapidError("The vapid header needs t=<JWT> and k=<public key>")
    try:
        header = json.loads(_b64url_decode(parts[0]))
        claims = json.loads(_b64url_decode(parts[1]))
        signature = _b64url_decode(parts[2])
        raw_key = _b64url_decode(key_text)
    except (ValueError, binascii.Error) as exc:
        raise VapidError(f"The VAPID token or key is not valid base64url JSON: {exc}") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise VapidError("The VAPID token's header and claims must be JSON objects")
    if len(raw_key) != 65 or raw_key[0] != 4:
        raise VapidError("The VAPID key must be an uncompressed P-256 point (65 bytes)")
    if config.vapid_public_keys and raw_key not in {
        _b64url_decode(k) for k in config.vapid_public_keys
    }:
        raise VapidError("The VAPID key is not the one this subscription was created with")
    if config.verify_vapid:
        _verify_signature(header, parts, signature, raw_key)
        _verify_claims(claims, origin)
    return VapidIdentity(claims=claims, public_key=key_text)


def _verify_signature(
    header: dict[str, Any], parts: list[str], signature: bytes, raw_key: bytes
) -> None:
    if header.get("alg") != "ES256":
        raise VapidError("The VAPID token must be signed with ES256")
    if len(signature) != 64:
        raise VapidError("The VAPID signature must be 64 bytes (r || s)")
    try:
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw_key)
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        key.verify(der, f"{parts[0]}.{parts[1]}".encode("ascii"), ec.ECDSA(hashes.SHA256()))
    except (ValueError, InvalidSignature) as exc:
        raise VapidError("The VAPID signature does not verify with the given key") from exc


def _verify_claims(claims: dict[str, Any], origin: str) -> None:
    if claims.get("aud") != origin:
        raise VapidError(f"The VAPID aud claim must be {origin!r}, not {claims.get('aud')!r}")
    expiry = claims.get("exp")
    now = time.time()
    if not isinstance(expiry, int) or expiry <= now:
        raise VapidError("The VAPID exp claim is missing or in the past")
    if expiry > now + _MAX_VAPID_LIFETIME + _CLOCK_SKEW:
        raise VapidError("The VAPID exp claim is more than 24 hours ahead")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject.startswith(("mailto:", "https:")):
        raise VapidError("The VAPID sub claim must be a mailto: or https: URL")


def _aes128gcm_problem(body: bytes) -> str | None:
    if len(body) < _SALT_AND_RS + 1:
        return "The aes128gcm header is truncated"
    record_size = int.from_bytes(body[16:20], "big")
    key_id_length = body[20]
    if record_size < 18:
        return "The aes128gcm record size must be at least 18"
    if len(body) < _SALT_AND_RS + 1 + key_id_length + _MIN_CIPHERTEXT:
        return "The aes128gcm body is shorter than its header and tag"
    return None


async def push_message(exchange: Exchange) -> Response:
    """``POST /push/{subscription_id}``: check, record, answer 201."""
    config = exchange.state.config.push
    request = exchange.request
    subscription = request.path_params["subscription_id"]
    if subscription in config.unknown_subscriptions:
        return error_response(404, 102, "Invalid token")
    origin = f"{request.url.scheme}://{request.url.netloc}"
    try:
        identity = check_vapid(request.headers.get("authorization"), origin, config)
    except VapidError as exc:
        return error_response(401, 109, str(exc))

    fault = await exchange.injected_fault(fault_error)
    if fault is not None:
        return fault
    if subscription in config.gone_subscriptions:
        return error_response(410, 106, "No such subscription")
    ttl_text = request.headers.get("ttl")
    if ttl_text is None:
        return error_response(400, 111, "Missing TTL value")
    ttl = ascii_number(ttl_text)
    if ttl is None:
        return error_response(400, 111, "The TTL header must be a non-negative integer")
    body = exchange.body
    if len(body) > config.max_payload_bytes:
        return error_response(
            413, 104, f"Payload too large: at most {config.max_payload_bytes} bytes"
        )
    encoding = request.headers.get("content-encoding")
    if body:
        if encoding != "aes128gcm":
            return error_response(400, 110, "Content-Encoding must be aes128gcm")
        problem = _aes128gcm_problem(body)
        if problem is not None:
            return error_response(400, 110, problem)
    urgency = request.headers.get("urgency", "normal")
    if urgency not in _URGENCIES:
        return error_response(400, None, f"Urgency must be one of {sorted(_URGENCIES)}")
    topic = request.headers.get("topic")
    if topic is not None and not _TOPIC.match(topic):
        return error_response(400, None, "Topic must be at most 32 base64url characters")

    message_id = uuid4().hex
    state = exchange.state
    state.messages.append(
        MessageRecord(
            id=state.next_id("msg"),
            provider="push",
            provider_message_id=message_id,
            sender=identity.claims.get("sub"),
            recipients=[subscription],
            received_at=datetime.now(UTC),
            details={
                "ttl": ttl,
                "urgency": urgency,
                "topic": topic,
                "content_encoding": encoding,
                "payload_bytes": len(body),
                "vapid_claims": identity.claims,
                "vapid_public_key": identity.public_key,
            },
            request=exchange.record,
        )
    )
    response = Response(
        status_code=201, headers={"Location": f"{origin}/m/{message_id}", "TTL": ttl_text}
    )
    return await exchange.deliver(response)


ROUTES = [
    Route("/push/{subscription_id}", provider_endpoint("push", push_message), methods=["POST"])
]
