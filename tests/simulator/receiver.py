"""A stand-in for LQS's webhook endpoints: it checks every callback's signature and records it.

Each signature is checked twice, independently of the simulator's signing code: by the
small verifiers here, written from the providers' documentation, and by the providers'
official SDKs (resend ``Webhooks.verify``, sendgrid ``EventWebhook``, twilio
``RequestValidator``). ``POST /{provider}/…`` picks the scheme: ``resend``, ``sendgrid``
or ``twilio``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import resend
import uvicorn
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from sendgrid.helpers.eventwebhook import EventWebhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

TOLERANCE_SECONDS = 5 * 60


# --- verifiers, written from the providers' documentation ---------------------------------


def svix_problem(
    secret: str, headers: dict[str, str], body: bytes, *, now: float | None = None
) -> str | None:
    """Why a Svix-signed delivery does not verify, or ``None`` when it does."""
    msg_id = headers.get("svix-id")
    timestamp = headers.get("svix-timestamp")
    signatures = headers.get("svix-signature")
    if not msg_id or not timestamp or not signatures:
        return "missing svix-id, svix-timestamp or svix-signature"
    if not timestamp.isdigit():
        return "svix-timestamp is not unix seconds"
    if abs((time.time() if now is None else now) - int(timestamp)) > TOLERANCE_SECONDS:
        return "svix-timestamp is more than 5 minutes away"
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for candidate in signatures.split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected.encode()):
            return None
    return "no v1 signature matches"


def sendgrid_signature_valid(public_key: str, timestamp: str, body: bytes, signature: str) -> bool:
    """Whether ``signature`` (base64 DER ECDSA) signs ``timestamp + body`` for ``public_key``."""
    key = load_der_public_key(base64.b64decode(public_key))
    assert isinstance(key, ec.EllipticCurvePublicKey)
    try:
        key.verify(
            base64.b64decode(signature), timestamp.encode() + body, ec.ECDSA(hashes.SHA256())
        )
    except (InvalidSignature, binascii.Error):
        return False
    return True


def twilio_expected_signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    """The ``X-Twilio-Signature`` Twilio would send for a form POST of ``params`` to ``url``."""
    signed = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


# --- the official SDKs' verdicts ------------------------------------------------------------


def _sdk_problem(
    provider: str, keys: Keys, url: str, headers: dict[str, str], body: bytes
) -> str | None:
    if provider == "resend":
        try:
            resend.Webhooks.verify(
                {
                    "payload": body.decode(),
                    "headers": {
                        "id": headers.get("svix-id", ""),
                        "timestamp": headers.get("svix-timestamp", ""),
                        "signature": headers.get("svix-signature", ""),
                    },
                    "webhook_secret": keys.resend_secret or "",
                }
            )
        except ValueError as exc:
            return f"resend SDK: {exc}"
        return None
    if provider == "sendgrid":
        valid = EventWebhook(keys.sendgrid_public_key).verify_signature(
            body.decode(),
            headers.get("x-twilio-email-event-webhook-signature", ""),
            headers.get("x-twilio-email-event-webhook-timestamp", ""),
        )
        return None if valid else "sendgrid SDK: signature does not verify"
    params = dict(parse_qsl(body.decode(), keep_blank_values=True))
    valid = RequestValidator(keys.twilio_token).validate(
        url, params, headers.get("x-twilio-signature", "")
    )
    return None if valid else "twilio SDK: signature does not verify"


def _own_problem(
    provider: str, keys: Keys, url: str, headers: dict[str, str], body: bytes
) -> str | None:
    if provider == "resend":
        return svix_problem(keys.resend_secret or "", headers, body)
    if provider == "sendgrid":
        valid = sendgrid_signature_valid(
            keys.sendgrid_public_key or "",
            headers.get("x-twilio-email-event-webhook-timestamp", ""),
            body,
            headers.get("x-twilio-email-event-webhook-signature", ""),
        )
        return None if valid else "ECDSA signature does not verify"
    params = parse_qsl(body.decode(), keep_blank_values=True)
    expected = twilio_expected_signature(keys.twilio_token, url, params)
    if hmac.compare_digest(expected, headers.get("x-twilio-signature", "")):
        return None
    return "X-Twilio-Signature does not match"


# --- the receiver -------------------------------------------------------------------------


@dataclass
class Keys:
    """What the receiver verifies with: it learns them as LQS would, from registration."""

    resend_secret: str | None = None
    sendgrid_public_key: str | None = None
    twilio_token: str = ""


@dataclass(frozen=True)
class Received:
    """One callback as it arrived, with both verdicts (``None`` = the signature is right)."""

    provider: str
    url: str
    headers: dict[str, str]
    body: bytes
    problem: str | None
    sdk_problem: str | None
    status: int

    @property
    def verified(self) -> bool:
        """Whether both verifiers accepted the signature."""
        return self.problem is None and self.sdk_problem is None

    def json(self) -> Any:
        """The body parsed as JSON (Resend, SendGrid)."""
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        """The body parsed as a form (Twilio)."""
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))

    @property
    def event_type(self) -> str:
        """``type`` (Resend), ``event`` (SendGrid) or ``MessageStatus`` (Twilio)."""
        if self.provider == "resend":
            return str(self.json()["type"])
        if self.provider == "sendgrid":
            [event] = self.json()
            return str(event["event"])
        return self.form()["MessageStatus"]


@dataclass(frozen=True)
class Answer:
    """How to answer one request: a status, after ``delay`` seconds."""

    status: int
    delay: float = 0.0


class Receiver:
    """Records every callback; answers 200 unless told otherwise with :meth:`answer_next`."""

    def __init__(self) -> None:
        self.keys = Keys()
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._answers: deque[Answer] = deque()
        self.app = Starlette(
            routes=[Route("/{provider}/{rest:path}", self._receive, methods=["POST"])]
        )

    def reset(self, keys: Keys) -> None:
        """Forget what arrived and the scripted answers; verify with ``keys`` from now on."""
        with self._lock:
            self.keys = keys
            self._received.clear()
            self._answers.clear()

    def answer_next(self, *answers: Answer) -> None:
        """Answer the next requests with ``answers``, in order, then 200 again."""
        with self._lock:
            self._answers.extend(answers)

    def received(self, provider: str | None = None) -> list[Received]:
        """What arrived, in arrival order, optionally for one provider."""
        with self._lock:
            return [r for r in self._received if provider in (None, r.provider)]

    async def _receive(self, request: Request) -> Response:
        provider = request.path_params["provider"]
        body = await request.body()
        headers = dict(request.headers.items())
        url = str(request.url)
        with self._lock:
            keys = self.keys
            answer = self._answers.popleft() if self._answers else Answer(200)
        own = _own_problem(provider, keys, url, headers, body)
        sdk = _sdk_problem(provider, keys, url, headers, body)
        with self._lock:
            self._received.append(Received(provider, url, headers, body, own, sdk, answer.status))
        if answer.delay:
            await asyncio.sleep(answer.delay)
        response = PlainTextResponse("ok" if answer.status < 300 else "no", answer.status)
        if 300 <= answer.status < 400:
            response.headers["Location"] = "/elsewhere"
        return response


@contextmanager
def serving(app: Starlette) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 and a free port in a thread; yield its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            loop="asyncio",
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
    )
    thread = threading.Thread(target=server.run, name="callback-receiver", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the callback receiver did not start")
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
