"""One valid request per provider, and the VAPID and aes128gcm pieces a push needs."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.simulator.conftest import RESEND_KEY, SENDGRID_KEY, TWILIO_SID, TWILIO_TOKEN

SENDER_KEY = ec.generate_private_key(ec.SECP256R1())


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def public_key_text(key: ec.EllipticCurvePrivateKey) -> str:
    return b64url(key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))


def vapid(
    origin: str,
    *,
    key: ec.EllipticCurvePrivateKey = SENDER_KEY,
    signer: ec.EllipticCurvePrivateKey | None = None,
    **claims: Any,
) -> str:
    """A ``vapid t=…, k=…`` header for ``origin``; ``signer`` forges it with another key.

    A claim given as ``None`` is left out.
    """
    body = {"aud": origin, "exp": int(time.time()) + 3600, "sub": "mailto:ops@acme.example"}
    body.update(claims)
    body = {name: value for name, value in body.items() if value is not None}
    signing_input = (
        b64url(json.dumps({"typ": "JWT", "alg": "ES256"}).encode())
        + "."
        + b64url(json.dumps(body).encode())
    )
    der = (signer or key).sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    signature = b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    return f"vapid t={signing_input}.{signature}, k={public_key_text(key)}"


def aes128gcm(ciphertext_bytes: int = 64) -> bytes:
    """A body framed like RFC 8188 aes128gcm: salt, record size, key id, ciphertext."""
    key_id = b"\x04" + os.urandom(64)
    return (
        os.urandom(16)
        + (4096).to_bytes(4, "big")
        + bytes([len(key_id)])
        + key_id
        + os.urandom(ciphertext_bytes)
    )


def send_resend(
    client: httpx.Client, *, headers: dict[str, str] | None = None, **kwargs: Any
) -> httpx.Response:
    """A valid Resend send; ``headers``, if given, replace the default ``Authorization``."""
    return client.post(
        "/emails",
        json={"from": "hello@acme.example", "to": "lead@example.com", "subject": "Hi"},
        headers={"Authorization": f"Bearer {RESEND_KEY}"} if headers is None else headers,
        **kwargs,
    )


def send_sendgrid(client: httpx.Client, **kwargs: Any) -> httpx.Response:
    return client.post(
        "/v3/mail/send",
        json={
            "personalizations": [{"to": [{"email": "lead@example.com"}]}],
            "from": {"email": "hello@acme.example"},
            "subject": "Hi",
            "content": [{"type": "text/plain", "value": "Hi"}],
        },
        headers={"Authorization": f"Bearer {SENDGRID_KEY}"},
        **kwargs,
    )


def send_twilio(client: httpx.Client, **kwargs: Any) -> httpx.Response:
    return client.post(
        f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json",
        data={"To": "+14155550100", "From": "+14155550199", "Body": "Hi"},
        auth=(TWILIO_SID, TWILIO_TOKEN),
        **kwargs,
    )


def send_push(client: httpx.Client, **kwargs: Any) -> httpx.Response:
    return client.post(
        "/push/sub-1",
        content=aes128gcm(),
        headers={
            "Authorization": vapid(str(client.base_url).rstrip("/")),
            "TTL": "60",
            "Content-Encoding": "aes128gcm",
        },
        **kwargs,
    )


def send_sink(client: httpx.Client, **kwargs: Any) -> httpx.Response:
    return client.post("/hooks/crm", content=b'{"type":"lead.qualified"}', **kwargs)


SENDS: dict[str, Callable[..., httpx.Response]] = {
    "resend": send_resend,
    "sendgrid": send_sendgrid,
    "twilio": send_twilio,
    "push": send_push,
    "sink": send_sink,
}
"""A request each provider endpoint accepts, by provider name."""
