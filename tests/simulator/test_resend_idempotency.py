"""Resend's ``Idempotency-Key``: replay, conflict, concurrency, and faults that break a send."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from lqs.simulator import SimulatorControl
from tests.simulator.conftest import RESEND_KEY, Configure

AUTH = {"Authorization": f"Bearer {RESEND_KEY}"}
EMAIL: dict[str, Any] = {
    "from": "hello@acme.example",
    "to": "lead@example.com",
    "subject": "Welcome",
    "text": "Hi",
}
BATCH = [EMAIL, {**EMAIL, "to": "other@example.com"}]


def keyed(key: str) -> dict[str, str]:
    return {**AUTH, "Idempotency-Key": key}


def retry_until(
    attempt: Callable[[], httpx.Response],
    done: Callable[[httpx.Response], bool],
    deadline: float = 5.0,
) -> httpx.Response:
    """Repeat ``attempt`` until ``done`` holds for its answer, or ``deadline`` seconds pass."""
    stop = time.monotonic() + deadline
    while True:
        response = attempt()
        if done(response) or time.monotonic() > stop:
            return response
        time.sleep(0.05)


@pytest.mark.parametrize(("path", "payload"), [("/emails", EMAIL), ("/emails/batch", BATCH)])
def test_same_key_and_payload_replays_the_first_answer_and_sends_nothing(
    client: httpx.Client, sim: SimulatorControl, path: str, payload: Any
) -> None:
    first = client.post(path, json=payload, headers=keyed("welcome/42"))
    again = client.post(path, json=payload, headers=keyed("welcome/42"))

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert sim.idempotency_counts() == {"welcome/42": len(payload) if path.endswith("batch") else 1}
    assert [r.outcome for r in sim.requests("resend")] == ["accepted", "replayed"]


@pytest.mark.parametrize(
    ("path", "payload", "changed"),
    [
        ("/emails", EMAIL, {**EMAIL, "subject": "Other"}),
        ("/emails/batch", BATCH, BATCH[:1]),
    ],
)
def test_same_key_with_another_payload_is_409(
    client: httpx.Client, sim: SimulatorControl, path: str, payload: Any, changed: Any
) -> None:
    client.post(path, json=payload, headers=keyed("k-1"))

    response = client.post(path, json=changed, headers=keyed("k-1"))

    assert response.status_code == 409
    assert response.json() == {
        "statusCode": 409,
        "message": "Same idempotency key used with a different request payload.",
        "name": "invalid_idempotent_request",
    }
    assert sim.idempotency_counts() == {"k-1": len(payload) if path.endswith("batch") else 1}


def test_key_order_in_the_payload_does_not_make_it_different(client: httpx.Client) -> None:
    first = client.post("/emails", json=EMAIL, headers=keyed("k-order"))
    reordered = client.post("/emails", json=dict(reversed(EMAIL.items())), headers=keyed("k-order"))

    assert reordered.json() == first.json()


@pytest.mark.parametrize("path", ["/emails", "/emails/batch"])
@pytest.mark.parametrize("key", ["", "k" * 257])
def test_key_outside_1_to_256_chars_is_400(
    client: httpx.Client, sim: SimulatorControl, path: str, key: str
) -> None:
    payload = BATCH if path.endswith("batch") else EMAIL

    response = client.post(path, json=payload, headers=keyed(key))

    assert response.status_code == 400
    assert response.json() == {
        "statusCode": 400,
        "message": "The key must be between 1-256 chars.",
        "name": "invalid_idempotency_key",
    }
    assert sim.messages() == []


def test_key_of_256_chars_is_accepted(client: httpx.Client) -> None:
    assert client.post("/emails", json=EMAIL, headers=keyed("k" * 256)).status_code == 200


def test_refused_request_does_not_use_up_its_key(
    client: httpx.Client, sim: SimulatorControl
) -> None:
    refused = client.post("/emails", json={**EMAIL, "to": "bad"}, headers=keyed("k-fix"))
    corrected = client.post("/emails", json=EMAIL, headers=keyed("k-fix"))

    assert refused.status_code == 422
    assert corrected.status_code == 200
    assert sim.idempotency_counts() == {"k-fix": 1}


def test_request_while_the_first_is_in_flight_is_409_then_replayed(
    client: httpx.Client, sim: SimulatorControl, configure: Configure
) -> None:
    configure(resend={"faults": {"script": ["hang"], "hang_seconds": 0.8}})

    with pytest.raises(httpx.ReadTimeout):
        client.post("/emails", json=EMAIL, headers=keyed("k-hang"), timeout=0.2)
    concurrent = client.post("/emails", json=EMAIL, headers=keyed("k-hang"))
    replayed = retry_until(
        lambda: client.post("/emails", json=EMAIL, headers=keyed("k-hang")),
        lambda response: response.status_code == 200,
    )

    assert concurrent.status_code == 409
    assert concurrent.json() == {
        "statusCode": 409,
        "message": "Same idempotency key used while original request is still in progress.",
        "name": "concurrent_idempotent_requests",
    }
    assert replayed.status_code == 200
    [message] = sim.messages("resend")
    assert replayed.json() == {"id": message.provider_message_id}
    assert sim.idempotency_counts() == {"k-hang": 1}


def test_retry_after_a_dropped_connection_replays_without_sending_again(
    client: httpx.Client, sim: SimulatorControl, configure: Configure
) -> None:
    configure(resend={"faults": {"drop_after_accept_rate": 1.0}})

    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/emails", json=EMAIL, headers=keyed("k-drop"))
    retried = client.post("/emails", json=EMAIL, headers=keyed("k-drop"))

    assert retried.status_code == 200
    [message] = sim.messages("resend")
    assert retried.json() == {"id": message.provider_message_id}
    assert sim.idempotency_counts() == {"k-drop": 1}


def test_batch_retry_after_a_dropped_connection_sends_nothing_twice(
    client: httpx.Client, sim: SimulatorControl, configure: Configure
) -> None:
    configure(resend={"faults": {"script": ["drop"]}})

    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/emails/batch", json=BATCH, headers=keyed("k-batch-drop"))
    retried = client.post("/emails/batch", json=BATCH, headers=keyed("k-batch-drop"))

    assert retried.status_code == 200
    assert [item["id"] for item in retried.json()["data"]] == [
        m.provider_message_id for m in sim.messages("resend")
    ]
    assert sim.idempotency_counts() == {"k-batch-drop": 2}


def test_injected_error_does_not_keep_the_key(
    client: httpx.Client, sim: SimulatorControl, configure: Configure
) -> None:
    configure(resend={"faults": {"script": ["500"]}})

    failed = client.post("/emails", json=EMAIL, headers=keyed("k-500"))
    retried = client.post("/emails", json=EMAIL, headers=keyed("k-500"))

    assert failed.status_code == 500
    assert retried.status_code == 200
    assert sim.idempotency_counts() == {"k-500": 1}


def test_keys_expire_after_their_ttl(
    client: httpx.Client, sim: SimulatorControl, configure: Configure
) -> None:
    configure(resend={"idempotency_ttl_seconds": 0.2})
    first = client.post("/emails", json=EMAIL, headers=keyed("k-ttl"))

    second = retry_until(
        lambda: client.post("/emails", json=EMAIL, headers=keyed("k-ttl")),
        lambda response: response.json() != first.json(),
    )

    assert second.status_code == 200
    assert second.json() != first.json()
    assert sim.idempotency_counts() == {"k-ttl": 2}
