"""Web push ``POST /push/{subscription_id}``: VAPID, TTL, size, encoding, gone subscriptions."""

from __future__ import annotations

import base64
import json
import os
import time
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from lqs.simulator import SimulatorControl
from tests.simulator.conftest import Configure
from tests.simulator.senders import SENDER_KEY, aes128gcm, b64url, public_key_text, vapid

MORE_INFO = "http://autopush.readthedocs.io/en/latest/http.html#error-codes"


def push_error(status: int, errno: int | None, error: str, message: str) -> dict[str, Any]:
    return {
        "code": status,
        "errno": errno,
        "error": error,
        "message": message,
        "more_info": MORE_INFO,
    }


@pytest.fixture
def origin(simulator_url: str) -> str:
    return simulator_url


def headers(origin: str, **extra: str) -> dict[str, str]:
    return {
        "Authorization": vapid(origin),
        "TTL": "60",
        "Content-Encoding": "aes128gcm",
        "Content-Type": "application/octet-stream",
        **extra,
    }


def test_accepted_push_is_201_with_location_and_ttl(
    client: httpx.Client, sim: SimulatorControl, origin: str
) -> None:
    body = aes128gcm()

    response = client.post(
        "/push/sub-1", content=body, headers=headers(origin, Urgency="high", Topic="quote")
    )

    assert response.status_code == 201
    assert response.content == b""
    assert response.headers["TTL"] == "60"
    [message] = sim.messages("push")
    assert response.headers["Location"] == f"{origin}/m/{message.provider_message_id}"
    assert message.recipients == ["sub-1"]
    assert message.sender == "mailto:ops@acme.example"
    assert message.details["ttl"] == 60
    assert message.details["urgency"] == "high"
    assert message.details["topic"] == "quote"
    assert message.details["vapid_public_key"] == public_key_text(SENDER_KEY)
    assert base64.b64decode(message.request.body_base64) == body


def test_push_without_payload_needs_no_content_encoding(client: httpx.Client, origin: str) -> None:
    response = client.post("/push/sub-1", headers={"Authorization": vapid(origin), "TTL": "0"})

    assert response.status_code == 201


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "Missing or unsupported Authorization scheme: expected `vapid`"),
        ("WebPush abc", "Missing or unsupported Authorization scheme: expected `vapid`"),
        ("vapid t=abc", "The vapid header needs t=<JWT> and k=<public key>"),
        ("vapid t=a.b.c, k=AAAA", "The VAPID token or key is not valid base64url JSON: "),
    ],
)
def test_malformed_vapid_header_is_401(
    client: httpx.Client, origin: str, authorization: str | None, message: str
) -> None:
    sent = headers(origin)
    if authorization is None:
        del sent["Authorization"]
    else:
        sent["Authorization"] = authorization

    response = client.post("/push/sub-1", content=aes128gcm(), headers=sent)

    assert response.status_code == 401
    body = response.json()
    assert body["message"].startswith(message)
    assert {k: v for k, v in body.items() if k != "message"} == {
        "code": 401,
        "errno": 109,
        "error": "Unauthorized",
        "more_info": MORE_INFO,
    }


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        (
            {"signer": ec.generate_private_key(ec.SECP256R1())},
            "The VAPID signature does not verify with the given key",
        ),
        ({"aud": "https://push.example.net"}, "The VAPID aud claim must be"),
        ({"exp": int(time.time()) - 10}, "The VAPID exp claim is missing or in the past"),
        ({"exp": int(time.time()) + 25 * 3600}, "The VAPID exp claim is more than 24 hours ahead"),
        ({"sub": None}, "The VAPID sub claim must be a mailto: or https: URL"),
        ({"sub": "ops@acme.example"}, "The VAPID sub claim must be a mailto: or https: URL"),
    ],
)
def test_vapid_token_that_does_not_verify_is_401(
    client: httpx.Client, sim: SimulatorControl, origin: str, claims: dict[str, Any], message: str
) -> None:
    response = client.post(
        "/push/sub-1",
        content=aes128gcm(),
        headers=headers(origin, Authorization=vapid(origin, **claims)),
    )

    assert response.status_code == 401
    assert response.json()["errno"] == 109
    assert response.json()["message"].startswith(message)
    assert sim.messages() == []


def test_unverified_mode_checks_only_the_shape(
    client: httpx.Client, origin: str, configure: Configure
) -> None:
    configure(push={"verify_vapid": False})
    forged = vapid(origin, signer=ec.generate_private_key(ec.SECP256R1()), aud="https://x")

    response = client.post(
        "/push/sub-1", content=aes128gcm(), headers=headers(origin, Authorization=forged)
    )

    assert response.status_code == 201


def test_key_other_than_the_subscriptions_is_401(
    client: httpx.Client, origin: str, configure: Configure
) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    configure(push={"vapid_public_keys": [public_key_text(SENDER_KEY)]})

    refused = client.post(
        "/push/sub-1",
        content=aes128gcm(),
        headers=headers(origin, Authorization=vapid(origin, key=other)),
    )
    accepted = client.post("/push/sub-1", content=aes128gcm(), headers=headers(origin))

    assert refused.status_code == 401
    assert accepted.status_code == 201


def test_gone_subscription_is_410(
    client: httpx.Client, sim: SimulatorControl, origin: str, configure: Configure
) -> None:
    configure(push={"gone_subscriptions": ["sub-gone"]})

    response = client.post("/push/sub-gone", content=aes128gcm(), headers=headers(origin))

    assert response.status_code == 410
    assert response.json() == push_error(410, 106, "Gone", "No such subscription")
    assert response.headers["Cache-Control"] == "max-age=86400"
    assert sim.messages() == []


def test_unknown_subscription_is_404(
    client: httpx.Client, origin: str, configure: Configure
) -> None:
    configure(push={"unknown_subscriptions": ["sub-unknown"]})

    response = client.post("/push/sub-unknown", content=aes128gcm(), headers=headers(origin))

    assert response.status_code == 404
    assert response.json() == push_error(404, 102, "Not Found", "Invalid token")


def test_missing_ttl_is_400(client: httpx.Client, origin: str) -> None:
    sent = headers(origin)
    del sent["TTL"]

    response = client.post("/push/sub-1", content=aes128gcm(), headers=sent)

    assert response.status_code == 400
    assert response.json() == push_error(400, 111, "Bad Request", "Missing TTL value")


def test_payload_over_4096_bytes_is_413(client: httpx.Client, origin: str) -> None:
    framing = len(aes128gcm(0))
    largest = aes128gcm(4096 - framing)

    accepted = client.post("/push/sub-1", content=largest, headers=headers(origin))
    refused = client.post("/push/sub-1", content=largest + b"x", headers=headers(origin))

    assert accepted.status_code == 201
    assert refused.status_code == 413
    assert refused.json() == push_error(
        413, 104, "Request Entity Too Large", "Payload too large: at most 4096 bytes"
    )


@pytest.mark.parametrize(
    ("body", "encoding", "message"),
    [
        (aes128gcm(), "aesgcm", "Content-Encoding must be aes128gcm"),
        (b"\x00" * 20, "aes128gcm", "The aes128gcm header is truncated"),
        (aes128gcm(5), "aes128gcm", "The aes128gcm body is shorter than its header and tag"),
    ],
    ids=["aesgcm", "truncated header", "short body"],  # random bodies: ids every worker agrees on
)
def test_body_not_framed_as_aes128gcm_is_400(
    client: httpx.Client, origin: str, body: bytes, encoding: str, message: str
) -> None:
    response = client.post(
        "/push/sub-1", content=body, headers=headers(origin, **{"Content-Encoding": encoding})
    )

    assert response.status_code == 400
    assert response.json() == push_error(400, 110, "Bad Request", message)


def test_unknown_urgency_is_400(client: httpx.Client, origin: str) -> None:
    response = client.post(
        "/push/sub-1", content=aes128gcm(), headers=headers(origin, Urgency="urgent")
    )

    assert response.status_code == 400
    assert response.json()["errno"] is None


def test_pywebpush_sends_to_the_simulator_unchanged(
    sim: SimulatorControl, simulator_url: str, configure: Configure
) -> None:
    pywebpush = pytest.importorskip("pywebpush")
    py_vapid = pytest.importorskip("py_vapid")
    browser_key = ec.generate_private_key(ec.SECP256R1())
    subscription = {
        "endpoint": f"{simulator_url}/push/sub-sdk",
        "keys": {"p256dh": public_key_text(browser_key), "auth": b64url(os.urandom(16))},
    }
    sender = py_vapid.Vapid02()
    sender.generate_keys()

    response = pywebpush.webpush(
        subscription_info=subscription,
        data=json.dumps({"title": "Quote ready"}),
        vapid_private_key=sender,
        vapid_claims={"sub": "mailto:ops@acme.example"},
        ttl=120,
    )
    configure(push={"gone_subscriptions": ["sub-sdk"]})
    with pytest.raises(pywebpush.WebPushException) as gone:
        pywebpush.webpush(
            subscription_info=subscription,
            data="again",
            vapid_private_key=sender,
            vapid_claims={"sub": "mailto:ops@acme.example"},
        )

    assert response.status_code == 201
    [message] = sim.messages("push")
    assert message.recipients == ["sub-sdk"]
    assert message.details["ttl"] == 120
    assert message.details["content_encoding"] == "aes128gcm"
    assert gone.value.response is not None
    assert gone.value.response.status_code == 410


# A header's bytes are read as Latin-1, where "²" and "³" are digits to str.isdigit().
@pytest.mark.parametrize("ttl", ["²", "6³", "-1", "0x10", "1e3", "9" * 19])
def test_a_ttl_that_is_not_ascii_digits_is_400(client: httpx.Client, origin: str, ttl: str) -> None:
    response = client.post(
        "/push/sub-1",
        content=aes128gcm(),
        headers={**headers(origin), "TTL": ttl.encode("latin-1")},
    )

    assert response.status_code == 400
    assert response.json() == push_error(
        400, 111, "Bad Request", "The TTL header must be a non-negative integer"
    )
