"""The web push adapter against a local push service that records what it receives.

Every key is generated here: the VAPID pair the sender signs with, and the subscriber's
P-256 pair and auth secret that only the "browser" (this test) can decrypt with. The push
service listens on 127.0.0.1, so the provider is built with ``allow_private=True`` except
where the SSRF guard is under test.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import http_ece  # type: ignore[import-untyped]
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from lqs.domain.delivery import Verdict, WebPushSettings
from lqs.providers.base import OutboundMessage, ProviderConfigError
from lqs.providers.webpush import MAX_PAYLOAD_BYTES, WebPushProvider
from tests.providers.fakes import FakeDns, LocalServer, RecordingApp, was_connected

# --- the push service: the shared receiver, answering 201 Created ----------------------


@pytest.fixture(scope="module")
def receiver_status() -> int:
    """A push service answers 201 Created (RFC 8030)."""
    return 201


@pytest.fixture
def endpoint(local_server: LocalServer) -> str:
    return f"http://127.0.0.1:{local_server.port}/wpush/v2/sub-123"


# --- keys ---------------------------------------------------------------------------


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _point(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


@dataclass(frozen=True)
class Subscriber:
    key: ec.EllipticCurvePrivateKey
    auth: bytes

    @property
    def metadata(self) -> dict[str, str]:
        return {"p256dh": _b64url(_point(self.key)), "auth": _b64url(self.auth)}

    def decrypt(self, body: bytes) -> Any:
        plain = http_ece.decrypt(
            body, private_key=self.key, auth_secret=self.auth, version="aes128gcm"
        )
        return json.loads(plain)


@pytest.fixture(scope="module")
def vapid_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def subscriber() -> Subscriber:
    return Subscriber(ec.generate_private_key(ec.SECP256R1()), os.urandom(16))


def _raw_private(key: ec.EllipticCurvePrivateKey) -> str:
    return _b64url(key.private_numbers().private_value.to_bytes(32, "big"))


def _pem(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture
def settings(vapid_key: ec.EllipticCurvePrivateKey) -> WebPushSettings:
    return WebPushSettings(
        vapid_private_key=_raw_private(vapid_key),
        vapid_subject="mailto:ops@example.com",
        ttl=3600,
    )


def _message(endpoint: str, metadata: dict[str, str], **fields: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "communication_id": uuid.uuid4(),
        "client_id": uuid.uuid4(),
        "lead_id": uuid.uuid4(),
        "channel": "push",
        "recipient": endpoint,
        "subject": "New lead",
        "content": "Ann Lee scored 87",
        "metadata": metadata,
    }
    values.update(fields)
    return OutboundMessage(**values)


def _vapid_token(authorization: str) -> tuple[str, str]:
    """The JWT and the public key of a ``vapid t=…,k=…`` header."""
    scheme, _, params = authorization.partition(" ")
    assert scheme == "vapid"
    parts = dict(param.split("=", 1) for param in params.split(","))
    return parts["t"], parts["k"]


# --- what the push service receives -------------------------------------------------


async def test_the_body_decrypts_with_the_subscribers_key(
    http: httpx.AsyncClient,
    receiver: RecordingApp,
    endpoint: str,
    settings: WebPushSettings,
    subscriber: Subscriber,
) -> None:
    message = _message(endpoint, subscriber.metadata, content="Ann Lee scored 87 — café")

    result = await WebPushProvider(http, allow_private=True).send(settings, message)

    assert result.verdict is Verdict.ACCEPTED
    [request] = receiver.requests
    assert request.path == "/wpush/v2/sub-123"
    assert request.headers["content-encoding"] == "aes128gcm"
    assert request.headers["ttl"] == "3600"
    assert "urgency" not in request.headers
    assert subscriber.decrypt(request.body) == {
        "title": "New lead",
        "body": "Ann Lee scored 87 — café",
        "communication_id": str(message.communication_id),
    }


async def test_the_vapid_jwt_verifies_and_names_the_push_service(
    http: httpx.AsyncClient,
    receiver: RecordingApp,
    endpoint: str,
    settings: WebPushSettings,
    subscriber: Subscriber,
    vapid_key: ec.EllipticCurvePrivateKey,
) -> None:
    before = int(time.time())

    await WebPushProvider(http, allow_private=True).send(
        settings, _message(endpoint, subscriber.metadata)
    )

    token, public = _vapid_token(receiver.requests[0].headers["authorization"])
    assert public == _b64url(_point(vapid_key))
    audience = endpoint.rsplit("/wpush", 1)[0]
    claims = jwt.decode(token, vapid_key.public_key(), algorithms=["ES256"], audience=audience)
    assert claims["sub"] == "mailto:ops@example.com"
    assert before < claims["exp"] <= int(time.time()) + 24 * 3600
    assert jwt.get_unverified_header(token) == {"typ": "JWT", "alg": "ES256"}


async def test_a_pem_vapid_key_signs_as_well_as_a_raw_one(
    http: httpx.AsyncClient,
    receiver: RecordingApp,
    endpoint: str,
    subscriber: Subscriber,
    vapid_key: ec.EllipticCurvePrivateKey,
) -> None:
    settings = WebPushSettings(
        vapid_private_key=_pem(vapid_key), vapid_subject="https://example.com"
    )

    result = await WebPushProvider(http, allow_private=True).send(
        settings, _message(endpoint, subscriber.metadata)
    )

    assert result.accepted
    token, _ = _vapid_token(receiver.requests[0].headers["authorization"])
    claims = jwt.decode(
        token, vapid_key.public_key(), algorithms=["ES256"], options={"verify_aud": False}
    )
    assert claims["sub"] == "https://example.com"


async def test_urgency_from_the_metadata_is_sent(
    http: httpx.AsyncClient,
    receiver: RecordingApp,
    endpoint: str,
    settings: WebPushSettings,
    subscriber: Subscriber,
) -> None:
    message = _message(endpoint, {**subscriber.metadata, "urgency": "high"})

    await WebPushProvider(http, allow_private=True).send(settings, message)

    assert receiver.requests[0].headers["urgency"] == "high"


# --- how answers are classified -----------------------------------------------------


async def test_a_201_is_accepted_with_the_location_as_external_id(
    http: httpx.AsyncClient,
    receiver: RecordingApp,
    endpoint: str,
    settings: WebPushSettings,
    subscriber: Subscriber,
) -> None:
    receiver.headers = {"Location": "https://push.example.net/m/abc"}

    result = await WebPushProvider(http, allow_private=True).send(
        settings, _message(endpoint, subscriber.metadata)
    )

    assert result.verdict is Verdict.ACCEPTED
    assert (result.http_status, result.external_id) == (201, "https://push.example.net/m/abc")


@pytest.mark.parametrize(
    ("status", "verdict", "gone", "code"),
    [
        (200, Verdict.ACCEPTED, False, None),
        (202, Verdict.ACCEPTED, False, None),
        (404, Verdict.PERMANENT, True, "subscription_gone"),
        (410, Verdict.PERMANENT, True, "subscription_gone"),
        (413, Verdict.PERMANENT, False, "payload_too_large"),
        (400, Verdict.PERMANENT, False, "400"),
        (401, Verdict.PERMANENT, False, "401"),
        (403, Verdict.PERMANENT, False, "403"),
        (307, Verdict.PERMANENT, False, "307"),
        (408, Verdict.TRANSIENT, False, "408"),
        (429, Verdict.TRANSIENT, False, "429"),
        (500, Verdict.TRANSIENT, False, "500"),
        (502, Verdict.TRANSIENT, False, "502"),
        (503, Verdict.TRANSIENT, False, "503"),
    ],
)
async def test_each_status_maps_to_its_verdict(
    http: httpx.AsyncClient,
    receiver: RecordingApp,
    endpoint: str,
    settings: WebPushSettings,
    subscriber: Subscriber,
    status: int,
    verdict: Verdict,
    gone: bool,
    code: str | None,
) -> None:
    receiver.status = status
    receiver.headers = {"Location": f"{endpoint}/moved"} if status == 307 else {}

    result = await WebPushProvider(http, allow_private=True).send(
        settings, _message(endpoint, subscriber.metadata)
    )

    assert (result.verdict, result.recipient_gone, result.error_code) == (verdict, gone, code)
    assert result.http_status == status
    assert len(receiver.requests) == 1  # a redirect is not followed


async def test_a_429_honours_retry_after(
    http: httpx.AsyncClient,
    receiver: RecordingApp,
    endpoint: str,
    settings: WebPushSettings,
    subscriber: Subscriber,
) -> None:
    receiver.status, receiver.headers = 429, {"Retry-After": "120"}

    result = await WebPushProvider(http, allow_private=True).send(
        settings, _message(endpoint, subscriber.metadata)
    )

    assert result.verdict is Verdict.TRANSIENT
    assert (result.retry_after, result.rate_limited) == (120.0, True)


async def test_the_push_services_reason_is_in_the_error_message(
    http: httpx.AsyncClient,
    receiver: RecordingApp,
    endpoint: str,
    settings: WebPushSettings,
    subscriber: Subscriber,
) -> None:
    receiver.status, receiver.body = 403, b'{"reason": "BadJwtToken"}'

    result = await WebPushProvider(http, allow_private=True).send(
        settings, _message(endpoint, subscriber.metadata)
    )

    assert result.verdict is Verdict.PERMANENT
    assert result.error_message == "HTTP 403: BadJwtToken"
    assert result.response == {"reason": "BadJwtToken"}


async def test_a_silent_push_service_is_a_transient_timeout(
    receiver: RecordingApp, endpoint: str, settings: WebPushSettings, subscriber: Subscriber
) -> None:
    receiver.hang = True

    async with httpx.AsyncClient(timeout=0.2) as http:
        result = await WebPushProvider(http, allow_private=True).send(
            settings, _message(endpoint, subscriber.metadata)
        )

    assert (result.verdict, result.error_code) == (Verdict.TRANSIENT, "timeout")


async def test_a_refused_connection_is_transient(
    http: httpx.AsyncClient, settings: WebPushSettings, subscriber: Subscriber, closed_port: int
) -> None:
    message = _message(f"http://127.0.0.1:{closed_port}/push", subscriber.metadata)

    result = await WebPushProvider(http, allow_private=True).send(settings, message)

    assert (result.verdict, result.error_code) == (Verdict.TRANSIENT, "connection_error")


# --- what is refused before sending -------------------------------------------------


def _content_for(provider: WebPushProvider, plaintext_bytes: int) -> str:
    """Content that makes the JSON payload exactly ``plaintext_bytes`` long."""
    empty = provider.payload(_message("http://127.0.0.1/", {}, content=""))
    return "x" * (plaintext_bytes - len(empty))


async def test_the_largest_payload_that_fits_in_4096_bytes_is_sent(
    http: httpx.AsyncClient,
    receiver: RecordingApp,
    endpoint: str,
    settings: WebPushSettings,
    subscriber: Subscriber,
) -> None:
    provider = WebPushProvider(http, allow_private=True)
    message = _message(endpoint, subscriber.metadata, content=_content_for(provider, 3993))

    result = await provider.send(settings, message)

    assert result.accepted
    assert len(receiver.requests[0].body) == MAX_PAYLOAD_BYTES
    assert subscriber.decrypt(receiver.requests[0].body)["body"] == message.content


async def test_a_payload_over_4096_bytes_encrypted_is_refused_before_sending(
    http: httpx.AsyncClient,
    receiver: RecordingApp,
    endpoint: str,
    settings: WebPushSettings,
    subscriber: Subscriber,
) -> None:
    provider = WebPushProvider(http, allow_private=True)
    message = _message(endpoint, subscriber.metadata, content=_content_for(provider, 3994))

    result = await provider.send(settings, message)

    assert (result.verdict, result.error_code) == (Verdict.PERMANENT, "payload_too_large")
    assert result.error_message is not None
    assert "4097 bytes" in result.error_message
    assert receiver.requests == []


_AUTH = _b64url(bytes(16))
_OFF_CURVE = _b64url(b"\x04" + b"\x01" * 64)


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        pytest.param(lambda s: {}, "needs its p256dh and auth", id="none"),
        pytest.param(lambda s: {"auth": _AUTH}, "needs its p256dh and auth", id="no-p256dh"),
        pytest.param(
            lambda s: {"p256dh": s.metadata["p256dh"]}, "needs its p256dh and auth", id="no-auth"
        ),
        pytest.param(
            lambda s: {"p256dh": "!!not base64!!", "auth": _AUTH}, "not base64url", id="not-base64"
        ),
        pytest.param(lambda s: {"p256dh": _OFF_CURVE, "auth": _AUTH}, "not an", id="off-curve"),
        pytest.param(
            lambda s: {
                "p256dh": _b64url(
                    s.key.public_key().public_bytes(
                        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
                    )
                ),
                "auth": _AUTH,
            },
            "not an uncompressed",
            id="compressed",
        ),
        pytest.param(
            lambda s: {"p256dh": s.metadata["p256dh"], "auth": "AAAA"},
            "auth secret is 3 bytes",
            id="short-auth",
        ),
    ],
)
async def test_missing_or_broken_subscription_keys_are_refused_before_sending(
    http: httpx.AsyncClient,
    receiver: RecordingApp,
    endpoint: str,
    settings: WebPushSettings,
    subscriber: Subscriber,
    keys: Callable[[Subscriber], dict[str, str]],
    problem: str,
) -> None:
    result = await WebPushProvider(http, allow_private=True).send(
        settings, _message(endpoint, keys(subscriber))
    )

    assert (result.verdict, result.error_code) == (Verdict.PERMANENT, "invalid_subscription")
    assert result.error_message is not None
    assert problem in result.error_message
    assert receiver.requests == []


async def test_padded_standard_base64_keys_are_accepted(
    http: httpx.AsyncClient,
    receiver: RecordingApp,
    endpoint: str,
    settings: WebPushSettings,
    subscriber: Subscriber,
) -> None:
    metadata = {
        "p256dh": base64.b64encode(_point(subscriber.key)).decode(),
        "auth": base64.b64encode(subscriber.auth).decode(),
    }

    result = await WebPushProvider(http, allow_private=True).send(
        settings, _message(endpoint, metadata)
    )

    assert result.accepted
    assert subscriber.decrypt(receiver.requests[0].body)["title"] == "New lead"


@pytest.mark.parametrize(
    "recipient", ["", "not a url", "ftp://push.example.com/x", "https://[::1]:8443/x"]
)
async def test_an_endpoint_that_is_not_an_http_url_is_refused(
    http: httpx.AsyncClient, settings: WebPushSettings, subscriber: Subscriber, recipient: str
) -> None:
    result = await WebPushProvider(http, allow_private=True).send(
        settings, _message(recipient, subscriber.metadata)
    )

    assert (result.verdict, result.error_code) == (Verdict.PERMANENT, "invalid_subscription")


async def test_an_unknown_urgency_is_refused(
    http: httpx.AsyncClient,
    receiver: RecordingApp,
    endpoint: str,
    settings: WebPushSettings,
    subscriber: Subscriber,
) -> None:
    message = _message(endpoint, {**subscriber.metadata, "urgency": "asap"})

    result = await WebPushProvider(http, allow_private=True).send(settings, message)

    assert (result.verdict, result.error_code) == (Verdict.PERMANENT, "invalid_message")
    assert receiver.requests == []


# --- unusable settings --------------------------------------------------------------


@pytest.mark.parametrize(
    "private_key",
    [
        pytest.param("not-a-key", id="garbage"),
        pytest.param(_b64url(b"\x00" * 32), id="zero-scalar"),
        pytest.param(_pem(ec.generate_private_key(ec.SECP384R1())), id="p384-pem"),
        pytest.param(_pem(ed25519.Ed25519PrivateKey.generate()), id="ed25519-pem"),
    ],
)
async def test_an_unusable_vapid_key_is_a_config_error(
    http: httpx.AsyncClient, endpoint: str, subscriber: Subscriber, private_key: str
) -> None:
    settings = WebPushSettings(vapid_private_key=private_key, vapid_subject="mailto:a@b.example")

    with pytest.raises(ProviderConfigError, match="vapid_private_key"):
        await WebPushProvider(http, allow_private=True).send(
            settings, _message(endpoint, subscriber.metadata)
        )


@pytest.mark.parametrize("subject", ["mailto:nobody", "https://example.com/contact"])
async def test_a_subject_vapid_refuses_is_a_config_error(
    http: httpx.AsyncClient,
    endpoint: str,
    subscriber: Subscriber,
    vapid_key: ec.EllipticCurvePrivateKey,
    subject: str,
) -> None:
    settings = WebPushSettings(vapid_private_key=_raw_private(vapid_key), vapid_subject=subject)

    with pytest.raises(ProviderConfigError, match="vapid_subject"):
        await WebPushProvider(http, allow_private=True).send(
            settings, _message(endpoint, subscriber.metadata)
        )


# --- the SSRF guard: endpoints come from whoever registered the subscription -----------


# IPv6 literals never get this far: a push endpoint must name a host (the VAPID audience).
_LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "2130706433", "0x7f.1"]


@pytest.mark.parametrize("host", _LOOPBACK_HOSTS)
async def test_a_loopback_endpoint_makes_no_connection_at_all(
    http: httpx.AsyncClient,
    settings: WebPushSettings,
    subscriber: Subscriber,
    listener: socket.socket,
    host: str,
) -> None:
    endpoint = f"http://{host}:{listener.getsockname()[1]}/push/sub-1"

    result = await WebPushProvider(http).send(settings, _message(endpoint, subscriber.metadata))

    assert (result.verdict, result.error_code) == (Verdict.PERMANENT, "ssrf_refused")
    assert result.http_status is None
    assert result.error_message is not None
    assert "loopback" in result.error_message
    assert not was_connected(listener)


@pytest.mark.parametrize("host", _LOOPBACK_HOSTS)
async def test_with_private_addresses_allowed_the_same_endpoint_does_connect(
    settings: WebPushSettings, subscriber: Subscriber, listener: socket.socket, host: str
) -> None:
    # The control for the test above: its listener would have seen a connection.
    endpoint = f"http://{host}:{listener.getsockname()[1]}/push/sub-1"

    async with httpx.AsyncClient(timeout=0.2) as http:
        result = await WebPushProvider(http, allow_private=True).send(
            settings, _message(endpoint, subscriber.metadata)
        )

    assert result.error_code == "timeout"  # connected; the listener never answers
    assert was_connected(listener)


@pytest.mark.parametrize(
    ("host", "shown"),
    [
        ("10.0.0.1", "10.0.0.1 (private)"),
        ("172.16.5.4", "172.16.5.4 (private)"),
        ("192.168.0.10", "192.168.0.10 (private)"),
        ("169.254.169.254", "169.254.169.254 (link-local)"),
        ("100.64.0.1", "100.64.0.1 (shared address space (carrier-grade NAT))"),
        ("0.0.0.0", "0.0.0.0 (unspecified)"),  # noqa: S104
    ],
)
async def test_a_non_public_literal_endpoint_is_refused_before_any_request(
    recording_transport: tuple[httpx.AsyncClient, list[httpx.Request]],
    settings: WebPushSettings,
    subscriber: Subscriber,
    host: str,
    shown: str,
) -> None:
    http, seen = recording_transport

    result = await WebPushProvider(http).send(
        settings, _message(f"https://{host}/push/sub-1", subscriber.metadata)
    )

    assert (result.verdict, result.error_code) == (Verdict.PERMANENT, "ssrf_refused")
    assert result.error_message is not None
    assert result.error_message.startswith(f"refusing to connect to {shown}")
    assert seen == []


async def test_a_name_that_resolves_to_a_private_address_is_refused(
    recording_transport: tuple[httpx.AsyncClient, list[httpx.Request]],
    dns: FakeDns,
    settings: WebPushSettings,
    subscriber: Subscriber,
) -> None:
    http, seen = recording_transport
    dns.answers["push.example.test"] = ["93.184.216.34", "10.1.2.3"]

    result = await WebPushProvider(http).send(
        settings, _message("https://push.example.test/sub-1", subscriber.metadata)
    )

    assert result.error_code == "ssrf_refused"
    assert result.error_message is not None
    assert result.error_message.startswith(
        "refusing to connect to 10.1.2.3, the address of push.example.test (private)"
    )
    assert seen == []


async def test_a_public_endpoint_is_posted_to_the_checked_address_under_its_name(
    recording_transport: tuple[httpx.AsyncClient, list[httpx.Request]],
    dns: FakeDns,
    settings: WebPushSettings,
    subscriber: Subscriber,
    vapid_key: ec.EllipticCurvePrivateKey,
) -> None:
    http, seen = recording_transport
    dns.answers["push.example.test"] = ["93.184.216.34"]

    result = await WebPushProvider(http).send(
        settings, _message("https://push.example.test:8443/wpush/sub-1", subscriber.metadata)
    )

    assert result.accepted
    [request] = seen
    assert str(request.url) == "https://93.184.216.34:8443/wpush/sub-1"
    assert request.headers["host"] == "push.example.test:8443"
    assert request.extensions["sni_hostname"] == "push.example.test"
    assert dns.asked == ["push.example.test"]
    # The VAPID audience is the push service's origin, not the address connected to.
    token, _ = _vapid_token(request.headers["authorization"])
    claims = jwt.decode(
        token,
        vapid_key.public_key(),
        algorithms=["ES256"],
        audience="https://push.example.test:8443",
    )
    assert claims["sub"] == "mailto:ops@example.com"


async def test_the_name_is_resolved_once_and_that_address_is_connected(
    http: httpx.AsyncClient,
    dns: FakeDns,
    receiver: RecordingApp,
    local_server: LocalServer,
    settings: WebPushSettings,
    subscriber: Subscriber,
) -> None:
    # httpx is handed the address: if it resolved the name again, asked would say so.
    dns.answers["push.example.test"] = ["127.0.0.1"]
    endpoint = f"http://push.example.test:{local_server.port}/wpush/v2/sub-123"

    result = await WebPushProvider(http, allow_private=True).send(
        settings, _message(endpoint, subscriber.metadata)
    )

    assert result.accepted
    assert dns.asked == ["push.example.test"]
    assert receiver.requests[0].headers["host"] == f"push.example.test:{local_server.port}"


async def test_an_endpoint_whose_name_does_not_resolve_is_transient(
    recording_transport: tuple[httpx.AsyncClient, list[httpx.Request]],
    dns: FakeDns,
    settings: WebPushSettings,
    subscriber: Subscriber,
) -> None:
    http, seen = recording_transport
    dns.answers["gone.example.test"] = socket.gaierror(socket.EAI_NONAME, "Name not known")

    result = await WebPushProvider(http).send(
        settings, _message("https://gone.example.test/sub-1", subscriber.metadata)
    )

    assert (result.verdict, result.error_code) == (Verdict.TRANSIENT, "connection_error")
    assert result.error_message is not None
    assert "cannot resolve gone.example.test" in result.error_message
    assert seen == []


async def test_an_allowed_host_skips_the_address_check(
    http: httpx.AsyncClient,
    receiver: RecordingApp,
    local_server: LocalServer,
    settings: WebPushSettings,
    subscriber: Subscriber,
) -> None:
    endpoint = f"http://LOCALHOST:{local_server.port}/wpush/v2/sub-123"

    result = await WebPushProvider(http, allowed_hosts={"localhost"}).send(
        settings, _message(endpoint, subscriber.metadata)
    )

    assert result.accepted
    assert len(receiver.requests) == 1


async def test_allowed_hosts_do_not_open_other_names(
    http: httpx.AsyncClient,
    settings: WebPushSettings,
    subscriber: Subscriber,
    listener: socket.socket,
) -> None:
    endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}/push/sub-1"

    result = await WebPushProvider(http, allowed_hosts={"localhost"}).send(
        settings, _message(endpoint, subscriber.metadata)
    )

    assert result.error_code == "ssrf_refused"
    assert not was_connected(listener)
