"""The outbound webhook adapter: Standard Webhooks signing, answers, and the SSRF guard.

Receivers run on 127.0.0.1 (plain and TLS, with a certificate authority made here), so
the provider is built with ``allow_private=True`` except where the guard is under test.
Names that are not ``localhost`` are answered by a fake resolver; nothing leaves the host.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import os
import socket
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from lqs.domain.delivery import Verdict, WebhookSettings
from lqs.providers.base import OutboundMessage, ProviderConfigError
from lqs.providers.ssrf import refusal_reason
from lqs.providers.webhook import WebhookProvider, signature_headers, signing_key
from tests.providers.fakes import (
    FakeDns,
    LocalServer,
    RecordingApp,
    serving,
    silent_socket,
    was_connected,
)

# --- where the webhook goes, the client and the settings ----------------------------


@pytest.fixture
def url(local_server: LocalServer) -> str:
    return f"http://127.0.0.1:{local_server.port}/hooks/lqs"


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    # Unlike the shared client, follow_redirects=True: the provider must refuse redirects
    # whatever the client says.
    async with httpx.AsyncClient(timeout=5.0, follow_redirects=True) as client:
        yield client


@pytest.fixture(scope="module")
def secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def _settings(url: str, secret: str) -> WebhookSettings:
    return WebhookSettings(url=url, secret=secret)


def _message(url: str, **fields: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "communication_id": uuid.uuid4(),
        "client_id": uuid.uuid4(),
        "lead_id": uuid.uuid4(),
        "channel": "webhook",
        "recipient": url,
        "subject": "Lead qualified",
        "content": "Ann Lee scored 87",
        "metadata": {"event_type": "lead.qualified", "score": "87"},
    }
    values.update(fields)
    return OutboundMessage(**values)


# --- signing ------------------------------------------------------------------------


def test_the_signature_matches_the_svix_test_vector() -> None:
    key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    when = datetime.fromtimestamp(1614265330, UTC)

    headers = signature_headers(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", when, '{"test": 2432232314}')

    assert headers == {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }


def test_a_secret_without_the_prefix_is_the_same_key() -> None:
    assert signing_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") == signing_key(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    )


@pytest.mark.parametrize(
    "bad_secret",
    [
        pytest.param("whsec_not*base64*at*all", id="not-base64"),
        pytest.param("whsec_" + base64.b64encode(bytes(23)).decode(), id="23-bytes"),
        pytest.param("whsec_" + base64.b64encode(bytes(65)).decode(), id="65-bytes"),
        pytest.param("whsec_", id="empty"),
    ],
)
async def test_an_unusable_secret_is_a_config_error(
    http: httpx.AsyncClient, receiver: RecordingApp, url: str, bad_secret: str
) -> None:
    with pytest.raises(ProviderConfigError, match=r"webhook\.secret"):
        await WebhookProvider(http, allow_private=True).send(
            _settings(url, bad_secret), _message(url)
        )
    assert receiver.requests == []


async def test_the_receiver_verifies_the_signed_event(
    http: httpx.AsyncClient, receiver: RecordingApp, url: str, secret: str
) -> None:
    message = _message(url)
    before = int(time.time())

    result = await WebhookProvider(http, allow_private=True).send(_settings(url, secret), message)

    assert result.verdict is Verdict.ACCEPTED
    [request] = receiver.requests
    assert request.path == "/hooks/lqs"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == str(message.communication_id)
    assert before <= int(request.headers["webhook-timestamp"]) <= int(time.time())
    event = Webhook(secret).verify(request.body, request.headers)
    assert event == {
        "type": "lead.qualified",
        "timestamp": event["timestamp"],
        "data": {
            "score": "87",
            "communication_id": str(message.communication_id),
            "lead_id": str(message.lead_id),
            "client_id": str(message.client_id),
            "subject": "Lead qualified",
            "content": "Ann Lee scored 87",
        },
    }
    sent_at = datetime.fromisoformat(event["timestamp"])
    assert event["timestamp"].endswith("Z")
    assert abs(sent_at.timestamp() - int(request.headers["webhook-timestamp"])) < 1


async def test_the_type_defaults_to_communication(
    http: httpx.AsyncClient, receiver: RecordingApp, url: str, secret: str
) -> None:
    await WebhookProvider(http, allow_private=True).send(
        _settings(url, secret), _message(url, metadata={})
    )

    assert json.loads(receiver.requests[0].body)["type"] == "communication"


async def test_a_retry_carries_the_same_webhook_id(
    http: httpx.AsyncClient, receiver: RecordingApp, url: str, secret: str
) -> None:
    provider = WebhookProvider(http, allow_private=True)
    message = _message(url)

    for _ in range(2):
        await provider.send(_settings(url, secret), message)

    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    for request in (first, second):
        Webhook(secret).verify(request.body, request.headers)


async def test_an_empty_recipient_falls_back_to_the_settings_url(
    http: httpx.AsyncClient, receiver: RecordingApp, url: str, secret: str
) -> None:
    result = await WebhookProvider(http, allow_private=True).send(
        _settings(url, secret), _message("")
    )

    assert result.accepted
    assert len(receiver.requests) == 1


# --- how answers are classified -----------------------------------------------------


@pytest.mark.parametrize(
    ("status", "verdict", "code"),
    [
        (200, Verdict.ACCEPTED, None),
        (201, Verdict.ACCEPTED, None),
        (204, Verdict.ACCEPTED, None),
        (301, Verdict.PERMANENT, "redirect"),
        (302, Verdict.PERMANENT, "redirect"),
        (307, Verdict.PERMANENT, "redirect"),
        (308, Verdict.PERMANENT, "redirect"),
        (400, Verdict.PERMANENT, "400"),
        (401, Verdict.PERMANENT, "401"),
        (404, Verdict.PERMANENT, "404"),
        (422, Verdict.PERMANENT, "422"),
        (408, Verdict.TRANSIENT, "408"),
        (410, Verdict.PERMANENT, "endpoint_gone"),
        (429, Verdict.TRANSIENT, "429"),
        (500, Verdict.TRANSIENT, "500"),
        (502, Verdict.TRANSIENT, "502"),
        (503, Verdict.TRANSIENT, "503"),
        (504, Verdict.TRANSIENT, "504"),
    ],
)
async def test_each_status_maps_to_its_verdict(
    http: httpx.AsyncClient,
    receiver: RecordingApp,
    url: str,
    secret: str,
    status: int,
    verdict: Verdict,
    code: str | None,
) -> None:
    receiver.status = status
    if 300 <= status < 400:
        receiver.headers = {"Location": url + "/elsewhere"}

    result = await WebhookProvider(http, allow_private=True).send(
        _settings(url, secret), _message(url)
    )

    assert (result.verdict, result.error_code, result.http_status) == (verdict, code, status)
    assert result.recipient_gone == (status == 410)
    assert len(receiver.requests) == 1  # in particular, no redirect was followed


async def test_a_redirect_is_reported_with_its_location(
    http: httpx.AsyncClient, receiver: RecordingApp, url: str, secret: str
) -> None:
    receiver.status, receiver.headers = 302, {"Location": url + "/v2"}

    result = await WebhookProvider(http, allow_private=True).send(
        _settings(url, secret), _message(url)
    )

    assert result.error_message == (
        f"HTTP 302: redirects are not followed (Location: {url}/v2); "
        "set the webhook URL to the final address"
    )
    assert [r.path for r in receiver.requests] == ["/hooks/lqs"]


@pytest.mark.parametrize("status", [429, 502, 503, 504])
async def test_throttling_answers_honour_retry_after(
    http: httpx.AsyncClient, receiver: RecordingApp, url: str, secret: str, status: int
) -> None:
    receiver.status, receiver.headers = status, {"Retry-After": "90"}

    result = await WebhookProvider(http, allow_private=True).send(
        _settings(url, secret), _message(url)
    )

    assert (result.verdict, result.retry_after) == (Verdict.TRANSIENT, 90.0)


async def test_a_silent_receiver_is_a_transient_timeout(
    http: httpx.AsyncClient, receiver: RecordingApp, url: str, secret: str
) -> None:
    receiver.hang = True

    result = await WebhookProvider(http, timeout=0.2, allow_private=True).send(
        _settings(url, secret), _message(url)
    )

    assert (result.verdict, result.error_code) == (Verdict.TRANSIENT, "timeout")


async def test_a_body_still_arriving_at_the_deadline_does_not_undo_the_status(
    http: httpx.AsyncClient, receiver: RecordingApp, url: str, secret: str
) -> None:
    receiver.drip = 0.05  # headers at once, then a chunk every 50 ms, forever

    result = await WebhookProvider(http, timeout=0.3, allow_private=True).send(
        _settings(url, secret), _message(url)
    )

    assert (result.verdict, result.http_status) == (Verdict.ACCEPTED, 200)


async def test_an_endless_answer_is_read_only_up_to_the_cap(
    http: httpx.AsyncClient, receiver: RecordingApp, url: str, secret: str
) -> None:
    receiver.status, receiver.drip = 500, 0.0
    started = time.monotonic()

    result = await WebhookProvider(http, timeout=5.0, allow_private=True).send(
        _settings(url, secret), _message(url)
    )

    assert (result.verdict, result.http_status) == (Verdict.TRANSIENT, 500)
    assert time.monotonic() - started < 2.5  # well before the 5 s deadline


async def test_a_refused_connection_is_transient(
    http: httpx.AsyncClient, secret: str, closed_port: int
) -> None:
    url = f"http://127.0.0.1:{closed_port}/hook"

    result = await WebhookProvider(http, allow_private=True).send(
        _settings(url, secret), _message(url)
    )

    assert (result.verdict, result.error_code) == (Verdict.TRANSIENT, "connection_error")


async def test_one_receivers_cookies_are_not_sent_to_the_next(
    http: httpx.AsyncClient, receiver: RecordingApp, url: str, secret: str
) -> None:
    provider = WebhookProvider(http, allow_private=True)
    receiver.headers = {"Set-Cookie": "session=tenant-a; Path=/"}
    await provider.send(_settings(url, secret), _message(url))

    await provider.send(_settings(url, secret), _message(url))

    assert "cookie" not in receiver.requests[1].headers


@pytest.mark.parametrize(
    "target", ["not a url", "ftp://hooks.example.com/x", "http:///no-host", "mailto:a@b.c"]
)
async def test_a_url_that_is_not_http_is_refused(
    http: httpx.AsyncClient, url: str, secret: str, target: str
) -> None:
    result = await WebhookProvider(http).send(_settings(url, secret), _message(target))

    assert (result.verdict, result.error_code) == (Verdict.PERMANENT, "invalid_url")


_LONG_NAME = ".".join(["a" * 60] * 5)


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("http://..../", id="only-dots"),
        pytest.param("http://hooks..example.com/x", id="empty-label"),
        pytest.param("https://.example.com/x", id="leading-dot"),
        pytest.param(f"http://{'a' * 64}.example.com/", id="64-char-label"),
        pytest.param(f"http://{_LONG_NAME}/", id="name-over-253"),
        pytest.param("http://hooks%20example.com/", id="percent-in-name"),
        pytest.param("https://\u2603.net/", id="idna-2008-refuses"),
        pytest.param("http://[::1/", id="unclosed-ipv6"),
    ],
)
async def test_a_host_that_can_never_resolve_fails_permanently_without_a_lookup(
    recording_transport: tuple[httpx.AsyncClient, list[httpx.Request]],
    monkeypatch: pytest.MonkeyPatch,
    secret: str,
    target: str,
) -> None:
    looked_up: list[object] = []

    async def resolver(host: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", resolver)
    http, seen = recording_transport
    url = "https://hooks.example.test/x"

    result = await WebhookProvider(http).send(_settings(url, secret), _message(target))

    assert (result.verdict, result.error_code) == (Verdict.PERMANENT, "invalid_url")
    assert result.error_message
    assert seen == []
    assert looked_up == []


async def test_a_name_the_resolver_cannot_encode_is_permanent_not_an_exception(
    recording_transport: tuple[httpx.AsyncClient, list[httpx.Request]],
    monkeypatch: pytest.MonkeyPatch,
    secret: str,
) -> None:
    async def idna_failure(host: Any, *args: Any, **kwargs: Any) -> Any:
        raise UnicodeError("encoding with 'idna' codec failed (label empty or too long)")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", idna_failure)
    http, seen = recording_transport
    url = "https://hooks.example.test/x"

    result = await WebhookProvider(http).send(_settings(url, secret), _message(url))

    assert (result.verdict, result.error_code) == (Verdict.PERMANENT, "invalid_url")
    assert "hooks.example.test" in (result.error_message or "")
    assert seen == []


@settings(max_examples=200, deadline=None)
@given(
    scheme=st.sampled_from(["http://", "https://", ""]),
    rest=st.text(st.characters(codec="utf-8") | st.sampled_from(".:/[]@%"), max_size=40),
)
def test_no_recipient_makes_the_adapter_raise(scheme: str, rest: str) -> None:
    async def nothing_resolves(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        # As socket.getaddrinfo does first: encode the name (UnicodeError if it cannot).
        host.encode("idna")
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def send() -> Verdict:
        asyncio.get_running_loop().getaddrinfo = nothing_resolves  # type: ignore[method-assign]
        transport = httpx.MockTransport(lambda request: httpx.Response(200))
        async with httpx.AsyncClient(transport=transport) as http:
            secret = "whsec_" + base64.b64encode(bytes(32)).decode()
            settings = _settings("https://hooks.example.test/x", secret)
            result = await WebhookProvider(http).send(settings, _message(scheme + rest))
        return result.verdict

    assert asyncio.run(send()) in (Verdict.PERMANENT, Verdict.TRANSIENT)


# --- the SSRF guard -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.254", "carrier-grade NAT"),
        ("0.0.0.0", "unspecified"),  # noqa: S104
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("fc00::1", "unique-local"),
        ("fd12:3456::1", "unique-local"),
        ("fec0::1", "site-local"),
        ("192.0.2.1", "not globally routable"),
        ("198.18.0.1", "not globally routable"),
        ("2001:db8::1", "not globally routable"),
        ("::ffff:127.0.0.1", "loopback 127.0.0.1 in IPv6 form"),
        ("::ffff:10.0.0.1", "private 10.0.0.1 in IPv6 form"),
        ("::ffff:169.254.169.254", "link-local 169.254.169.254 in IPv6 form"),
        ("::127.0.0.1", "loopback 127.0.0.1 in IPv6 form"),
        ("64:ff9b::a9fe:a9fe", "link-local 169.254.169.254 in IPv6 form"),
        ("2002:7f00:1::1", "loopback 127.0.0.1 in IPv6 form"),
    ],
)
def test_non_public_addresses_are_refused(address: str, reason: str) -> None:
    found = refusal_reason(ipaddress.ip_address(address))
    assert found is not None
    assert reason in found


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal_reason(ipaddress.ip_address(address)) is None


@pytest.fixture
def listener6() -> Iterator[socket.socket]:
    """A ``silent_socket`` on ::1."""
    with silent_socket("::1") as sock:
        yield sock


_LOOPBACK_FORMS = [
    pytest.param("127.0.0.1", "listener", id="ipv4"),
    pytest.param("localhost", "listener", id="localhost"),
    pytest.param("[::ffff:127.0.0.1]", "listener", id="ipv4-mapped"),
    pytest.param("2130706433", "listener", id="decimal-ipv4"),
    pytest.param("0x7f.1", "listener", id="hex-short-ipv4"),
    pytest.param("[::1]", "listener6", id="ipv6"),
]


@pytest.mark.parametrize(("host", "which"), _LOOPBACK_FORMS)
async def test_a_loopback_url_makes_no_connection_at_all(
    http: httpx.AsyncClient,
    secret: str,
    request: pytest.FixtureRequest,
    host: str,
    which: str,
) -> None:
    sock: socket.socket = request.getfixturevalue(which)
    url = f"http://{host}:{sock.getsockname()[1]}/hook"

    result = await WebhookProvider(http).send(_settings(url, secret), _message(url))

    assert (result.verdict, result.error_code) == (Verdict.PERMANENT, "ssrf_refused")
    assert result.error_message is not None
    assert "loopback" in result.error_message
    assert not was_connected(sock)


@pytest.mark.parametrize(("host", "which"), _LOOPBACK_FORMS)
async def test_with_private_addresses_allowed_the_same_url_does_connect(
    secret: str, request: pytest.FixtureRequest, host: str, which: str
) -> None:
    # The control for the test above: its listener would have seen a connection.
    sock: socket.socket = request.getfixturevalue(which)
    url = f"http://{host}:{sock.getsockname()[1]}/hook"

    async with httpx.AsyncClient() as http:
        result = await WebhookProvider(http, timeout=0.2, allow_private=True).send(
            _settings(url, secret), _message(url)
        )

    assert result.error_code == "timeout"  # connected; the listener never answers
    assert was_connected(sock)


@pytest.mark.parametrize(
    ("host", "shown"),
    [
        ("10.0.0.1", "10.0.0.1 (private)"),
        ("192.168.0.10", "192.168.0.10 (private)"),
        ("169.254.169.254", "169.254.169.254 (link-local)"),
        ("100.64.0.1", "100.64.0.1 (shared address space (carrier-grade NAT))"),
        ("0.0.0.0", "0.0.0.0 (unspecified)"),  # noqa: S104
        ("[::ffff:10.0.0.1]", "::ffff:10.0.0.1 (private 10.0.0.1 in IPv6 form)"),
        ("[::ffff:169.254.169.254]", "::ffff:169.254.169.254 (link-local 169.254.169.254"),
        ("[fd00::1]", "fd00::1 (unique-local)"),
        ("[fe80::1]", "fe80::1 (link-local)"),
        ("[::]", ":: (unspecified)"),
    ],
)
async def test_a_non_public_literal_is_refused_before_any_request(
    recording_transport: tuple[httpx.AsyncClient, list[httpx.Request]],
    secret: str,
    host: str,
    shown: str,
) -> None:
    http, seen = recording_transport
    url = f"https://{host}/hook"

    result = await WebhookProvider(http).send(_settings(url, secret), _message(url))

    assert (result.verdict, result.error_code) == (Verdict.PERMANENT, "ssrf_refused")
    assert result.error_message is not None
    assert result.error_message.startswith(f"refusing to connect to {shown}")
    assert seen == []


async def test_a_name_with_any_private_address_is_refused(
    recording_transport: tuple[httpx.AsyncClient, list[httpx.Request]],
    dns: FakeDns,
    secret: str,
) -> None:
    http, seen = recording_transport
    dns.answers["mixed.example.test"] = ["93.184.216.34", "10.1.2.3"]
    url = "https://mixed.example.test/hook"

    result = await WebhookProvider(http).send(_settings(url, secret), _message(url))

    assert result.error_code == "ssrf_refused"
    assert result.error_message is not None
    assert result.error_message.startswith(
        "refusing to connect to 10.1.2.3, the address of mixed.example.test (private)"
    )
    assert seen == []


async def test_the_request_goes_to_the_checked_address_under_the_original_name(
    recording_transport: tuple[httpx.AsyncClient, list[httpx.Request]],
    dns: FakeDns,
    secret: str,
) -> None:
    http, seen = recording_transport
    dns.answers["hooks.example.test"] = ["93.184.216.34"]
    url = "https://hooks.example.test:8443/hook?tenant=7"

    result = await WebhookProvider(http).send(_settings(url, secret), _message(url))

    assert result.accepted
    [request] = seen
    assert str(request.url) == "https://93.184.216.34:8443/hook?tenant=7"
    assert request.headers["host"] == "hooks.example.test:8443"
    assert request.extensions["sni_hostname"] == "hooks.example.test"
    assert request.headers["connection"] == "close"
    assert dns.asked == ["hooks.example.test"]


async def test_a_name_that_resolves_to_loopback_makes_no_connection(
    http: httpx.AsyncClient, dns: FakeDns, listener: socket.socket, secret: str
) -> None:
    dns.answers["rebound.example.test"] = ["127.0.0.1"]
    url = f"http://rebound.example.test:{listener.getsockname()[1]}/hook"

    result = await WebhookProvider(http).send(_settings(url, secret), _message(url))

    assert result.error_code == "ssrf_refused"
    assert not was_connected(listener)


async def test_the_name_is_resolved_once_and_that_address_is_connected(
    http: httpx.AsyncClient,
    dns: FakeDns,
    receiver: RecordingApp,
    local_server: LocalServer,
    secret: str,
) -> None:
    # httpx is handed the address: if it resolved the name again, asked would say so.
    dns.answers["hooks.example.test"] = ["127.0.0.1"]
    url = f"http://hooks.example.test:{local_server.port}/hook"

    result = await WebhookProvider(http, allow_private=True).send(
        _settings(url, secret), _message(url)
    )

    assert result.accepted
    assert dns.asked == ["hooks.example.test"]
    assert receiver.requests[0].headers["host"] == f"hooks.example.test:{local_server.port}"


async def test_an_unreachable_address_falls_back_to_the_next(
    http: httpx.AsyncClient,
    dns: FakeDns,
    receiver: RecordingApp,
    local_server: LocalServer,
    secret: str,
) -> None:
    dns.answers["two.example.test"] = ["127.0.0.2", "127.0.0.1"]  # nothing on 127.0.0.2
    url = f"http://two.example.test:{local_server.port}/hook"

    result = await WebhookProvider(http, allow_private=True).send(
        _settings(url, secret), _message(url)
    )

    assert result.accepted
    assert len(receiver.requests) == 1


async def test_a_name_that_does_not_resolve_is_transient(
    http: httpx.AsyncClient, dns: FakeDns, secret: str
) -> None:
    dns.answers["gone.example.test"] = socket.gaierror(socket.EAI_NONAME, "Name not known")
    url = "https://gone.example.test/hook"

    result = await WebhookProvider(http).send(_settings(url, secret), _message(url))

    assert (result.verdict, result.error_code) == (Verdict.TRANSIENT, "connection_error")
    assert result.error_message is not None
    assert "cannot resolve gone.example.test" in result.error_message


async def test_an_allowed_host_skips_the_address_check(
    http: httpx.AsyncClient,
    receiver: RecordingApp,
    local_server: LocalServer,
    secret: str,
) -> None:
    url = f"http://LOCALHOST:{local_server.port}/hook"

    result = await WebhookProvider(http, allowed_hosts={"localhost"}).send(
        _settings(url, secret), _message(url)
    )

    assert result.accepted
    assert len(receiver.requests) == 1


async def test_allowed_hosts_do_not_open_other_names(
    http: httpx.AsyncClient, listener: socket.socket, secret: str
) -> None:
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"

    result = await WebhookProvider(http, allowed_hosts={"localhost"}).send(
        _settings(url, secret), _message(url)
    )

    assert result.error_code == "ssrf_refused"
    assert not was_connected(listener)


# --- https to a pinned address --------------------------------------------------------


@dataclass(frozen=True)
class Tls:
    port: int
    trust: ssl.SSLContext
    receiver: RecordingApp


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_certificates(directory: Path, dns_name: str) -> tuple[Path, Path, bytes]:
    """A CA and a leaf certificate for ``dns_name`` only; returns the leaf's certificate
    and key files and the CA certificate (PEM)."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("LQS test CA"))
        .issuer_name(_name("LQS test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(dns_name))
        .issuer_name(ca.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    certfile, keyfile = directory / "leaf.pem", directory / "leaf.key"
    certfile.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certfile, keyfile, ca.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
async def tls_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Tls]:
    certfile, keyfile, ca = _write_certificates(
        tmp_path_factory.mktemp("tls"), "hooks.example.test"
    )
    app = RecordingApp()
    async with serving(app, ssl_certfile=str(certfile), ssl_keyfile=str(keyfile)) as port:
        yield Tls(port, ssl.create_default_context(cadata=ca.decode()), app)


async def test_https_checks_the_certificate_against_the_name_not_the_address(
    tls_server: Tls, dns: FakeDns, secret: str
) -> None:
    tls_server.receiver.reset()
    dns.answers["hooks.example.test"] = ["127.0.0.1"]
    dns.answers["other.example.test"] = ["127.0.0.1"]
    good = f"https://hooks.example.test:{tls_server.port}/hook"
    other = f"https://other.example.test:{tls_server.port}/hook"

    async with httpx.AsyncClient(verify=tls_server.trust) as http:
        provider = WebhookProvider(http, allow_private=True)
        first = await provider.send(_settings(good, secret), _message(good))
        # Same address and port: a pooled connection, checked for the first name only,
        # must not carry the second.
        second = await provider.send(_settings(other, secret), _message(other))

    assert first.accepted
    assert (second.verdict, second.error_code) == (Verdict.TRANSIENT, "connection_error")
    assert second.error_message is not None
    assert "CERTIFICATE_VERIFY_FAILED" in second.error_message
    [request] = tls_server.receiver.requests
    assert request.headers["host"] == f"hooks.example.test:{tls_server.port}"
    assert dns.asked == ["hooks.example.test", "other.example.test"]
