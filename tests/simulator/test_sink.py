"""Webhook sink ``POST /hooks/{name}``: exact bytes recorded, status per name, signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import httpx
import pytest
from starlette.datastructures import Headers

from lqs.simulator import SimulatorControl
from lqs.simulator.sink import signature_problem
from tests.simulator.conftest import Configure

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signed_headers(
    body: bytes, *, secret: str = SECRET, timestamp: int | None = None
) -> dict[str, str]:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": "msg_2x8Kq",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, "msg_2x8Kq", timestamp, body),
        "content-type": "application/json",
    }


def test_delivery_is_recorded_byte_for_byte_and_answered_200(
    client: httpx.Client, sim: SimulatorControl
) -> None:
    body = b'{"type":"lead.qualified","data":{"score":0.91}}  \n\xff'

    response = client.post("/hooks/crm", content=body, headers={"webhook-id": "msg_1"})

    assert response.status_code == 200
    [delivery] = sim.hook_deliveries("crm")
    assert base64.b64decode(delivery.body_base64) == body
    assert delivery.body is None  # not UTF-8: only the base64 copy survives
    assert delivery.headers["webhook-id"] == "msg_1"
    assert delivery.status == 200
    assert delivery.signature_valid is None


@pytest.mark.parametrize(
    ("hook", "status", "header", "value"),
    [
        ({"status": 204}, 204, None, None),
        ({"status": 410}, 410, None, None),
        ({"status": 500}, 500, None, None),
        ({"status": 301}, 301, "Location", "/hooks/crm/moved"),
        ({"status": 429, "retry_after_seconds": 7}, 429, "Retry-After", "7"),
    ],
)
def test_each_hook_answers_its_configured_status(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    hook: dict[str, object],
    status: int,
    header: str | None,
    value: str | None,
) -> None:
    configure(sink={"hooks": {"crm": hook}})

    response = client.post("/hooks/crm", content=b"{}")
    other = client.post("/hooks/other", content=b"{}")

    assert response.status_code == status
    if header is not None:
        assert response.headers[header] == value
    assert other.status_code == 200
    assert [d.status for d in sim.hook_deliveries("crm")] == [status]


def test_default_status_applies_to_unnamed_hooks(
    client: httpx.Client, configure: Configure
) -> None:
    configure(sink={"default_status": 503})

    assert client.post("/hooks/anything", content=b"{}").status_code == 503


def test_signed_delivery_is_verified(
    client: httpx.Client, sim: SimulatorControl, configure: Configure
) -> None:
    configure(sink={"hooks": {"crm": {"secret": SECRET}}})
    body = b'{"type":"lead.qualified"}'

    client.post("/hooks/crm", content=body, headers=signed_headers(body))
    client.post("/hooks/crm", content=body + b" ", headers=signed_headers(body))

    good, tampered = sim.hook_deliveries("crm")
    assert (good.signature_valid, good.signature_error) == (True, None)
    assert (tampered.signature_valid, tampered.signature_error) == (
        False,
        "no v1 signature matches",
    )


def test_signature_check_matches_the_reference_vector() -> None:
    body = b'{"test": 2432232314}'
    headers = Headers(
        {
            "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "webhook-timestamp": "1614265330",
            "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        }
    )

    assert signature_problem(SECRET, headers, body, now=1614265330) is None
    assert signature_problem(SECRET, headers, body + b" ", now=1614265330) == (
        "no v1 signature matches"
    )
    assert signature_problem(SECRET, headers, body) == (
        "webhook-timestamp is more than 5 minutes away from now"
    )


@pytest.mark.parametrize(
    ("drop", "problem"),
    [
        ("webhook-signature", "missing webhook-id, webhook-timestamp or webhook-signature"),
        ("webhook-id", "missing webhook-id, webhook-timestamp or webhook-signature"),
    ],
)
def test_unsigned_delivery_is_flagged(drop: str, problem: str) -> None:
    body = b"{}"
    headers = signed_headers(body)
    del headers[drop]

    assert signature_problem(SECRET, Headers(headers), body) == problem


def test_one_of_several_signatures_may_match() -> None:
    body = b"{}"
    headers = signed_headers(body)
    headers["webhook-signature"] = "v1,bm90IGl0 " + headers["webhook-signature"]

    assert signature_problem(SECRET, Headers(headers), body) is None


def test_future_timestamp_is_refused() -> None:
    body = b"{}"
    headers = signed_headers(body, timestamp=int(time.time()) + 600)

    assert signature_problem(SECRET, Headers(headers), body) == (
        "webhook-timestamp is more than 5 minutes away from now"
    )


# A header's bytes are read as Latin-1, where "²" and "¹" are digits to str.isdigit().
@pytest.mark.parametrize("timestamp", ["²", "1614265¹30", "-1614265330", "9" * 5000])
def test_a_timestamp_that_is_not_ascii_digits_is_flagged(timestamp: str) -> None:
    body = b"{}"
    headers = signed_headers(body)
    headers["webhook-timestamp"] = timestamp
    raw = [(name.encode(), value.encode("latin-1")) for name, value in headers.items()]

    assert signature_problem(SECRET, Headers(raw=raw), body) == (
        "webhook-timestamp is not unix seconds"
    )
