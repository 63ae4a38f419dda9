"""Webhook requests signed the way each provider signs them, and tenants to sign them for.

Shared by the webhook receiver tests: Svix HMAC-SHA256 for Resend, ECDSA P-256 for
SendGrid, HMAC-SHA1 over the public URL for Twilio, with secrets and keys made up here.
``signed_body`` signs arbitrary bytes, for bodies no JSON encoder would produce.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import psycopg
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from lqs.db.clients import create_client

PUBLIC = "https://lqs.example"
"""The public base URL the providers call; the test client calls http://test instead."""

SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"


# ---------------------------------------------------------------------------- signing


def new_svix_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def svix_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def sendgrid_public_key(private: ec.EllipticCurvePrivateKey) -> str:
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def sendgrid_signature(private: ec.EllipticCurvePrivateKey, timestamp: str, body: bytes) -> str:
    signature = private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode()


def twilio_signature(url: str, params: dict[str, str], auth_token: str) -> str:
    signed = url + "".join(name + value for name, value in sorted(params.items()))
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


# ---------------------------------------------------------------------------- tenants


@dataclass(frozen=True)
class Tenant:
    id: UUID
    lead_id: UUID
    svix_secret: str
    sendgrid_key: ec.EllipticCurvePrivateKey
    twilio_token: str
    twilio_account: str


def _delivery(tenant_secrets: dict[str, Any], *, with_webhook_secrets: bool) -> dict[str, Any]:
    resend: dict[str, Any] = {"api_key": "re_fake_key", "from_address": "lqs@sender.example"}
    sendgrid: dict[str, Any] = {"api_key": "SG.fake", "from_address": "lqs@sender.example"}
    if with_webhook_secrets:
        resend["webhook_secret"] = tenant_secrets["svix"]
        sendgrid["webhook_public_key"] = sendgrid_public_key(tenant_secrets["sendgrid"])
    return {
        "email": {"primary": "resend", "secondary": "sendgrid"},
        "resend": resend,
        "sendgrid": sendgrid,
        "twilio": {"account_sid": tenant_secrets["account"], "auth_token": tenant_secrets["token"],
                   "from_number": "+15005550006"},
    }  # fmt: skip


async def new_tenant(url: str, *, with_webhook_secrets: bool = True) -> Tenant:
    made = {
        "svix": new_svix_secret(),
        "sendgrid": ec.generate_private_key(ec.SECP256R1()),
        "token": f"fake-twilio-token-{uuid.uuid4().hex}",
        "account": "AC" + uuid.uuid4().hex,
    }
    slug = f"wh-{uuid.uuid4().hex[:10]}"
    settings = {"delivery": _delivery(made, with_webhook_secrets=with_webhook_secrets)}
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        client = await create_client(conn, slug, slug, settings)
        cur = await conn.execute(
            "INSERT INTO public.leads (client_id, email, phone, consent_status, status)"
            " VALUES (%s, %s, '+12015550123', 'granted', 'qualified') RETURNING id",
            (client.id, f"lead@{slug}.example"),
        )
        row = await cur.fetchone()
    assert row is not None
    return Tenant(client.id, row[0], made["svix"], made["sendgrid"], made["token"], made["account"])


# ---------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Signed:
    """A webhook request as the provider would send it."""

    path: str
    content: bytes
    headers: dict[str, str]


def resend_request(
    tenant: Tenant,
    email_id: str,
    *,
    event_type: str = "email.delivered",
    secret: str | None = None,
    skew: int = 0,
    shared: bool = False,
    data: dict[str, Any] | None = None,
) -> Signed:
    envelope = {
        "type": event_type,
        "created_at": "2026-05-04T09:30:00.000Z",
        "data": data if data is not None else {
            "email_id": email_id, "from": "lqs@sender.example", "to": ["a@b.example"],
            "subject": "Hello", "created_at": "2026-05-04T09:29:58.000Z",
        },
    }  # fmt: skip
    body = json.dumps(envelope, separators=(",", ":")).encode()
    msg_id = f"msg_{uuid.uuid4().hex}"
    timestamp = str(int(time.time()) + skew)
    headers = {
        "content-type": "application/json",
        "svix-id": msg_id,
        "svix-timestamp": timestamp,
        "svix-signature": svix_signature(secret or tenant.svix_secret, msg_id, timestamp, body),
    }
    return Signed("/webhooks/resend" + ("" if shared else f"/{tenant.id}"), body, headers)


def sendgrid_request(
    tenant: Tenant,
    message_id: str,
    *,
    key: ec.EllipticCurvePrivateKey | None = None,
    skew: int = 0,
    events: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> Signed:
    if events is None:
        now = int(time.time())
        base = {"email": "a@b.example", "sg_message_id": f"{message_id}.filterdrecv-1-2-3",
                **(extra or {})}  # fmt: skip
        events = [
            {**base, "event": "processed", "timestamp": now - 2,
             "sg_event_id": f"sg-{uuid.uuid4().hex}"},
            {**base, "event": "delivered", "timestamp": now - 1,
             "sg_event_id": f"sg-{uuid.uuid4().hex}", "response": "250 OK"},
        ]  # fmt: skip
    body = json.dumps(events, separators=(",", ":")).encode() + b"\r\n"
    timestamp = str(int(time.time()) + skew)
    headers = {
        "content-type": "application/json",
        SENDGRID_SIGNATURE: sendgrid_signature(key or tenant.sendgrid_key, timestamp, body),
        SENDGRID_TIMESTAMP: timestamp,
    }
    return Signed(f"/webhooks/sendgrid/{tenant.id}", body, headers)


def twilio_request(
    tenant: Tenant,
    sid: str,
    *,
    status: str = "undelivered",
    token: str | None = None,
    base: str = PUBLIC,
    shared: bool = False,
    params: dict[str, str] | None = None,
) -> Signed:
    path = "/webhooks/twilio" + ("" if shared else f"/{tenant.id}")
    if params is None:
        params = {
            "MessageSid": sid, "MessageStatus": status, "AccountSid": tenant.twilio_account,
            "From": "+15005550006", "To": "+12015550123", "ApiVersion": "2010-04-01",
        }  # fmt: skip
        if status in ("undelivered", "failed"):
            params["ErrorCode"] = "30003"
    signature = twilio_signature(base + path, params, token or tenant.twilio_token)
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": signature,
    }
    return Signed(path, urlencode(params).encode(), headers)


def signed_body(tenant: Tenant, provider: str, body: bytes) -> Signed:
    """``body``, whatever its bytes, signed for ``tenant`` as Resend or SendGrid sign."""
    timestamp = str(int(time.time()))
    if provider == "resend":
        msg_id = f"msg_{uuid.uuid4().hex}"
        headers = {
            "content-type": "application/json",
            "svix-id": msg_id,
            "svix-timestamp": timestamp,
            "svix-signature": svix_signature(tenant.svix_secret, msg_id, timestamp, body),
        }
    else:
        assert provider == "sendgrid", provider
        headers = {
            "content-type": "application/json",
            SENDGRID_SIGNATURE: sendgrid_signature(tenant.sendgrid_key, timestamp, body),
            SENDGRID_TIMESTAMP: timestamp,
        }
    return Signed(f"/webhooks/{provider}/{tenant.id}", body, headers)
