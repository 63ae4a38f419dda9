"""How each provider signs the callbacks it sends, byte for byte as the provider does.

- Resend (Svix): ``svix-signature: v1,<base64 HMAC-SHA256>`` over ``{id}.{timestamp}.{body}``,
  keyed with the base64 part of the ``whsec_…`` secret.
- SendGrid: ``X-Twilio-Email-Event-Webhook-Signature``, a base64 DER ECDSA P-256/SHA-256
  signature over the timestamp text followed by the raw body; the receiver holds the public
  key as base64 DER SubjectPublicKeyInfo.
- Twilio: ``X-Twilio-Signature``, base64 HMAC-SHA1 keyed with the auth token over the URL
  followed by each POST parameter's name and value, sorted by name.

Only the signing side lives here: the simulator never checks its own signatures, the
receiver does, with code of its own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Iterable

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

_WHSEC = "whsec_"


def new_svix_secret() -> str:
    """A new Svix endpoint secret: ``whsec_`` and the base64 of 24 random bytes."""
    return _WHSEC + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def svix_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_…`` secret (the prefix is optional, as in Svix's libraries).

    Raises:
        ValueError: what follows the prefix is not base64, or is empty.
    """
    try:
        key = base64.b64decode(secret.removeprefix(_WHSEC), validate=True)
    except binascii.Error as exc:
        raise ValueError("the secret is not base64 after whsec_") from exc
    if not key:
        raise ValueError("the secret is empty after whsec_")
    return key


def svix_signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``svix-signature`` header value (``v1,<base64>``) for one delivery.

    Raises:
        ValueError: ``secret`` is not a valid ``whsec_…`` secret.
    """
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(svix_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def new_sendgrid_key() -> ec.EllipticCurvePrivateKey:
    """A new P-256 key pair for signing SendGrid event webhooks."""
    return ec.generate_private_key(ec.SECP256R1())


def load_sendgrid_key(pem: str) -> ec.EllipticCurvePrivateKey:
    """The P-256 private key in ``pem`` (PKCS#8 or SEC1 "EC PRIVATE KEY", unencrypted).

    Raises:
        ValueError: ``pem`` is not an unencrypted PEM private key, or not one on P-256.
    """
    try:
        key = serialization.load_pem_private_key(pem.encode("utf-8"), password=None)
    except (TypeError, ValueError) as exc:
        raise ValueError("not an unencrypted PEM private key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("not an EC P-256 (secp256r1) private key")
    return key


def sendgrid_public_key(key: ec.EllipticCurvePrivateKey) -> str:
    """The public half of ``key`` as SendGrid's console shows it: base64 DER SPKI."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode("ascii")


def sendgrid_signature(key: ec.EllipticCurvePrivateKey, timestamp: int, body: bytes) -> str:
    """The ``X-Twilio-Email-Event-Webhook-Signature`` value: base64 DER ECDSA signature."""
    der = key.sign(str(timestamp).encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(der).decode("ascii")


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """The ``X-Twilio-Signature`` value for a form POST of ``params`` to ``url``.

    ``url`` is taken exactly as given (the ``StatusCallback``, query string included).
    """
    signed = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode("utf-8"), signed.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(digest.digest()).decode("ascii")
