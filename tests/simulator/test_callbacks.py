"""Delivery callbacks: after accepting a message, the simulator calls the sender back with the
provider's signed events, as configured (outcome, delay, order, duplicates, retries).

A receiver served for this module (``tests/simulator/receiver.py``) checks every signature
with its own verifiers and the official SDKs, and records what arrived. Tests wait for the
simulator to be done (``wait_for_callbacks``), never sleep.
"""

from __future__ import annotations

import base64
import re
import socket
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from lqs.simulator import (
    CallbacksConfig,
    SimulatorConfig,
    SimulatorControl,
    load_config,
    running_simulator,
)
from lqs.simulator.callbacks import Callback, CallbackDispatcher
from lqs.simulator.records import CallbackEvent
from tests.simulator.conftest import (
    RESEND_KEY,
    SENDGRID_KEY,
    TWILIO_SID,
    TWILIO_TOKEN,
    Configure,
)
from tests.simulator.receiver import Answer, Keys, Receiver, serving

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SENDGRID_PRIVATE = ec.generate_private_key(ec.SECP256R1())
SENDGRID_PEM = SENDGRID_PRIVATE.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8,
    serialization.NoEncryption(),
).decode()
SENDGRID_PUBLIC = base64.b64encode(
    SENDGRID_PRIVATE.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()
FAST = {"delay_seconds": 0.005, "retry_backoff_seconds": 0.01, "timeout_seconds": 2}
ISO_MILLIS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

RESEND_SEQUENCES = {
    "delivered": ["email.sent", "email.delivered"],
    "bounced": ["email.sent", "email.bounced"],
    "soft_bounced": ["email.sent", "email.delivery_delayed"],
    "complained": ["email.sent", "email.delivered", "email.complained"],
    "failed": ["email.failed"],
    "suppressed": ["email.suppressed"],
}
SENDGRID_SEQUENCES = {
    "delivered": ["processed", "delivered"],
    "bounced": ["processed", "bounce"],
    "soft_bounced": ["processed", "deferred"],
    "complained": ["processed", "delivered", "spamreport"],
    "failed": ["dropped"],
    "suppressed": ["dropped"],
}
TWILIO_SEQUENCES = {
    "delivered": [("sent", None), ("delivered", None)],
    "undelivered": [("sent", None), ("undelivered", "30003")],
    "failed": [("failed", "30008")],
}


# --- the receiver, the registrations and the sends -------------------------------------------


@pytest.fixture(scope="module")
def _served_receiver() -> Iterator[tuple[Receiver, str]]:
    receiver = Receiver()
    with serving(receiver.app) as url:
        yield receiver, url


@pytest.fixture
def receiver(_served_receiver: tuple[Receiver, str], sim: SimulatorControl) -> Receiver:
    """The receiver, emptied, verifying with the keys the tests register."""
    receiver, _ = _served_receiver
    receiver.reset(
        Keys(resend_secret=SECRET, sendgrid_public_key=SENDGRID_PUBLIC, twilio_token=TWILIO_TOKEN)
    )
    return receiver


@pytest.fixture
def receiver_url(_served_receiver: tuple[Receiver, str]) -> str:
    return _served_receiver[1]


def callbacks(configure: Configure, **settings: Any) -> None:
    """Configure the callbacks section: fast timings unless ``settings`` say otherwise."""
    configure(callbacks={**FAST, **settings})


def register_resend(sim: SimulatorControl, receiver_url: str) -> None:
    sim.register_webhook("resend", RESEND_KEY, f"{receiver_url}/resend/acme", secret=SECRET)


def register_sendgrid(sim: SimulatorControl, receiver_url: str) -> None:
    sim.register_webhook(
        "sendgrid", SENDGRID_KEY, f"{receiver_url}/sendgrid/acme", private_key=SENDGRID_PEM
    )


def send_email(client: httpx.Client, to: str | list[str] = "lead@example.com", **extra: Any) -> str:
    response = client.post(
        "/emails",
        json={"from": "Acme <hello@acme.example>", "to": to, "subject": "Hi", **extra},
        headers={"Authorization": f"Bearer {RESEND_KEY}"},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def send_mail(
    client: httpx.Client,
    personalizations: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> str:
    response = client.post(
        "/v3/mail/send",
        json={
            "personalizations": personalizations or [{"to": [{"email": "lead@example.com"}]}],
            "from": {"email": "hello@acme.example"},
            "subject": "Hi",
            "content": [{"type": "text/plain", "value": "Hi"}],
            **extra,
        },
        headers={"Authorization": f"Bearer {SENDGRID_KEY}"},
    )
    assert response.status_code == 202, response.text
    return response.headers["X-Message-Id"]


def send_sms(client: httpx.Client, status_callback: str | None, to: str = "+14155550100") -> str:
    form = {"To": to, "From": "+14155550199", "Body": "Hi"}
    if status_callback is not None:
        form["StatusCallback"] = status_callback
    response = client.post(
        f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json",
        data=form,
        auth=(TWILIO_SID, TWILIO_TOKEN),
    )
    assert response.status_code == 201, response.text
    return str(response.json()["sid"])


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- registration -----------------------------------------------------------------------------


def test_resend_registration_answers_201_with_the_given_secret(
    client: httpx.Client, sim: SimulatorControl, receiver_url: str
) -> None:
    url = f"{receiver_url}/resend/acme"

    response = client.post(
        "/_sim/webhooks",
        json={"provider": "resend", "api_key": RESEND_KEY, "url": url, "secret": SECRET},
    )

    assert response.status_code == 201
    assert response.json() == {
        "provider": "resend",
        "api_key": RESEND_KEY,
        "url": url,
        "secret": SECRET,
    }


def test_resend_registration_without_secret_generates_one_that_signs_the_events(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    receiver: Receiver,
    receiver_url: str,
) -> None:
    callbacks(configure)
    registered = sim.register_webhook("resend", RESEND_KEY, f"{receiver_url}/resend/acme")
    assert registered.secret is not None
    receiver.reset(Keys(resend_secret=registered.secret))

    send_email(client)
    sim.wait_for_callbacks()

    assert registered.secret.startswith("whsec_")
    assert len(base64.b64decode(registered.secret.removeprefix("whsec_"))) == 24
    assert [r.verified for r in receiver.received()] == [True, True]


def test_sendgrid_registration_answers_the_public_key_of_the_given_private_key(
    client: httpx.Client, sim: SimulatorControl, receiver_url: str
) -> None:
    url = f"{receiver_url}/sendgrid/acme"

    response = client.post(
        "/_sim/webhooks",
        json={
            "provider": "sendgrid",
            "api_key": SENDGRID_KEY,
            "url": url,
            "private_key": SENDGRID_PEM,
        },
    )

    assert response.status_code == 201
    assert response.json() == {
        "provider": "sendgrid",
        "api_key": SENDGRID_KEY,
        "url": url,
        "public_key": SENDGRID_PUBLIC,
    }


def test_sendgrid_registration_without_key_generates_one_whose_public_key_verifies(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    receiver: Receiver,
    receiver_url: str,
) -> None:
    callbacks(configure)
    registered = sim.register_webhook("sendgrid", SENDGRID_KEY, f"{receiver_url}/sendgrid/acme")
    assert registered.public_key is not None
    receiver.reset(Keys(sendgrid_public_key=registered.public_key))

    send_mail(client)
    sim.wait_for_callbacks()

    assert registered.public_key != SENDGRID_PUBLIC
    assert [r.verified for r in receiver.received()] == [True, True]


def test_listing_shows_registrations_without_secrets(
    client: httpx.Client, sim: SimulatorControl, receiver_url: str
) -> None:
    register_resend(sim, receiver_url)
    register_sendgrid(sim, receiver_url)

    listed = client.get("/_sim/webhooks").json()["webhooks"]

    assert listed == [
        {"provider": "resend", "api_key": RESEND_KEY, "url": f"{receiver_url}/resend/acme"},
        {
            "provider": "sendgrid",
            "api_key": SENDGRID_KEY,
            "url": f"{receiver_url}/sendgrid/acme",
            "public_key": SENDGRID_PUBLIC,
        },
    ]
    assert [w.secret for w in sim.webhooks()] == [None, None]


def test_registering_the_same_key_again_replaces_the_webhook(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    receiver: Receiver,
    receiver_url: str,
) -> None:
    callbacks(configure)
    register_resend(sim, receiver_url)
    sim.register_webhook("resend", RESEND_KEY, f"{receiver_url}/resend/moved", secret=SECRET)

    send_email(client)
    sim.wait_for_callbacks()

    assert [w.url for w in sim.webhooks()] == [f"{receiver_url}/resend/moved"]
    assert {r.url for r in receiver.received()} == {f"{receiver_url}/resend/moved"}


def test_cleared_webhooks_get_no_callbacks(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    receiver: Receiver,
    receiver_url: str,
) -> None:
    callbacks(configure)
    register_resend(sim, receiver_url)

    response = client.delete("/_sim/webhooks")
    send_email(client)

    assert response.json() == {"cleared": 1}
    assert sim.webhooks() == []
    assert sim.wait_for_callbacks() == []
    assert receiver.received() == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"provider": "twilio", "api_key": "AC1", "url": "http://x.example/"},
            "twilio needs no registration",
        ),
        ({"provider": "mailgun", "api_key": "k", "url": "http://x.example/"}, "provider"),
        ({"provider": "resend", "api_key": "", "url": "http://x.example/"}, "api_key"),
        ({"provider": "resend", "api_key": "re_x", "url": "ftp://x.example/"}, "http(s) URL"),
        (
            {"provider": "resend", "api_key": "re_x", "url": "http://x.example/", "secret": "abc"},
            "a Svix secret starts with whsec_",
        ),
        (
            {
                "provider": "resend",
                "api_key": "re_x",
                "url": "http://x.example/",
                "secret": "whsec_not base64",
            },
            "not base64",
        ),
        (
            {
                "provider": "resend",
                "api_key": "re_x",
                "url": "http://x.example/",
                "private_key": SENDGRID_PEM,
            },
            "private_key is for sendgrid",
        ),
        (
            {
                "provider": "sendgrid",
                "api_key": "SG.x",
                "url": "http://x.example/",
                "secret": SECRET,
            },
            "secret is for resend",
        ),
        (
            {
                "provider": "sendgrid",
                "api_key": "SG.x",
                "url": "http://x.example/",
                "private_key": "-----BEGIN PRIVATE KEY-----\nxx\n-----END PRIVATE KEY-----",
            },
            "not an unencrypted PEM private key",
        ),
        (
            {"provider": "resend", "api_key": "re_x", "url": "http://x.example/", "extra": 1},
            "Extra inputs are not permitted",
        ),
    ],
    ids=[
        "twilio",
        "unknown provider",
        "empty api key",
        "not http",
        "secret without whsec_",
        "secret not base64",
        "private key for resend",
        "secret for sendgrid",
        "private key not PEM",
        "unknown field",
    ],
)
def test_invalid_registration_is_422_naming_the_problem(
    client: httpx.Client, sim: SimulatorControl, body: dict[str, Any], message: str
) -> None:
    response = client.post("/_sim/webhooks", json=body)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_webhook"
    assert message in response.json()["error"]["message"]
    assert sim.webhooks() == []


def test_registration_that_is_not_json_is_400(client: httpx.Client) -> None:
    response = client.post("/_sim/webhooks", content=b"provider=resend")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_register_webhook_raises_on_a_bad_argument(sim: SimulatorControl) -> None:
    with pytest.raises(httpx.HTTPStatusError):
        sim.register_webhook("resend", RESEND_KEY, "not a url")


# --- registration through the configuration ---------------------------------------------------


def test_configured_webhooks_are_registered_and_called(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    receiver: Receiver,
    receiver_url: str,
) -> None:
    callbacks(
        configure,
        webhooks=[
            {
                "provider": "resend",
                "api_key": RESEND_KEY,
                "url": f"{receiver_url}/resend/acme",
                "secret": SECRET,
            },
            {
                "provider": "sendgrid",
                "api_key": SENDGRID_KEY,
                "url": f"{receiver_url}/sendgrid/acme",
                "private_key": SENDGRID_PEM,
            },
        ],
    )

    send_email(client)
    send_mail(client)
    sim.wait_for_callbacks()

    assert [w.provider for w in sim.webhooks()] == ["resend", "sendgrid"]
    assert len(receiver.received("resend")) == 2
    assert len(receiver.received("sendgrid")) == 2
    assert all(r.verified for r in receiver.received())


def test_configured_resend_webhook_without_secret_is_refused(client: httpx.Client) -> None:
    response = client.put(
        "/_sim/config",
        json={
            "callbacks": {
                "webhooks": [{"provider": "resend", "api_key": "re_x", "url": "http://x.example/"}]
            }
        },
    )

    assert response.status_code == 422
    assert "needs its secret" in response.json()["error"]["message"]


def test_new_configuration_replaces_configured_webhooks_and_keeps_registered_ones(
    sim: SimulatorControl, configure: Configure, receiver_url: str
) -> None:
    configured = {"provider": "sendgrid", "api_key": "SG.configured", "url": receiver_url}
    callbacks(configure, webhooks=[configured])
    register_resend(sim, receiver_url)

    callbacks(configure)

    assert [(w.provider, w.api_key) for w in sim.webhooks()] == [("resend", RESEND_KEY)]


def test_same_configuration_again_keeps_a_generated_sendgrid_key(
    sim: SimulatorControl, configure: Configure, receiver_url: str
) -> None:
    configured = {"provider": "sendgrid", "api_key": "SG.configured", "url": receiver_url}
    callbacks(configure, webhooks=[configured])
    [first] = sim.webhooks()

    callbacks(configure, webhooks=[configured])
    [again] = sim.webhooks()

    assert first.public_key is not None
    assert again.public_key == first.public_key


def test_config_file_may_register_webhooks_and_set_outcomes(tmp_path: Path) -> None:
    path = tmp_path / "simulator.yaml"
    path.write_text(
        "callbacks:\n"
        "  delay_seconds: 0.2\n"
        "  email:\n"
        "    rules: [{recipient: '*@bounce.example', outcome: bounced}]\n"
        "  webhooks:\n"
        "    - {provider: sendgrid, api_key: SG.x, url: 'http://127.0.0.1:8000/webhooks/sendgrid'}\n"
    )

    config = load_config(path)

    assert config.callbacks.delay_seconds == 0.2
    assert config.callbacks.email.outcome_for(["x@bounce.example"]) == "bounced"
    assert config.callbacks.webhooks[0].provider == "sendgrid"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"email": {"default": "undelivered"}}, "callbacks.email.default"),
        (
            {"email": {"rules": [{"recipient": "*", "outcome": "lost"}]}},
            "callbacks.email.rules.0.outcome",
        ),
        (
            {"sms": {"rules": [{"recipient": "+1*", "outcome": "bounced"}]}},
            "callbacks.sms.rules.0.outcome",
        ),
        ({"delay_seconds": -1}, "callbacks.delay_seconds"),
        ({"duplicates": 11}, "callbacks.duplicates"),
        ({"max_attempts": 0}, "callbacks.max_attempts"),
        ({"timeout_seconds": 0}, "callbacks.timeout_seconds"),
    ],
)
def test_invalid_callbacks_config_is_422_naming_the_setting(
    client: httpx.Client, section: dict[str, Any], message: str
) -> None:
    response = client.put("/_sim/config", json={"callbacks": section})

    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith(message)


def test_resend_rules_match_any_to_address_in_rule_order() -> None:
    config = SimulatorConfig.model_validate(
        {
            "callbacks": {
                "email": {
                    "rules": [
                        {"recipient": "*@complain.example", "outcome": "complained"},
                        {"recipient": "*@bounce.example", "outcome": "bounced"},
                    ]
                }
            }
        }
    )
    outcomes = config.callbacks.email

    assert outcomes.outcome_for(["a@bounce.example", "b@complain.example"]) == "complained"
    assert outcomes.outcome_for(["a@example.com", " B@Bounce.Example "]) == "bounced"
    assert outcomes.outcome_for(["a@example.com"]) == "delivered"


# --- Resend events ----------------------------------------------------------------------------


@pytest.mark.parametrize(("outcome", "types"), RESEND_SEQUENCES.items())
def test_resend_outcome_is_its_event_sequence(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    receiver: Receiver,
    receiver_url: str,
    outcome: str,
    types: list[str],
) -> None:
    callbacks(configure, email={"default": outcome})
    register_resend(sim, receiver_url)

    email_id = send_email(client)
    attempts = sim.wait_for_callbacks()

    received = receiver.received("resend")
    assert [r.event_type for r in received] == types
    assert all(r.verified for r in received), [(r.problem, r.sdk_problem) for r in received]
    assert {r.json()["data"]["email_id"] for r in received} == {email_id}
    assert len({r.headers["svix-id"] for r in received}) == len(types)
    assert [(a.event_type, a.status, a.message_id) for a in attempts] == [
        (t, 200, email_id) for t in types
    ]


def test_resend_event_carries_the_email_as_resend_does(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    receiver: Receiver,
    receiver_url: str,
) -> None:
    callbacks(configure)
    register_resend(sim, receiver_url)

    email_id = send_email(client, tags=[{"name": "communication", "value": "c-42"}])
    sim.wait_for_callbacks()

    sent, delivered = (r.json() for r in receiver.received())
    assert ISO_MILLIS_Z.match(sent["created_at"])
    assert sent["created_at"] < delivered["created_at"]
    assert sent["data"] == {
        "created_at": sent["data"]["created_at"],
        "email_id": email_id,
        "from": "Acme <hello@acme.example>",
        "to": ["lead@example.com"],
        "subject": "Hi",
        "tags": {"communication": "c-42"},
    }
    assert datetime.fromisoformat(sent["data"]["created_at"]).utcoffset() is not None
    assert receiver.received()[0].headers["svix-id"].startswith("msg_")
    assert receiver.received()[0].headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("outcome", "event_type", "detail"),
    [
        ("bounced", "email.bounced", "bounce"),
        ("failed", "email.failed", "failed"),
        ("suppressed", "email.suppressed", "suppressed"),
    ],
)
def test_resend_failure_events_say_why(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    receiver: Receiver,
    receiver_url: str,
    outcome: str,
    event_type: str,
    detail: str,
) -> None:
    callbacks(configure, email={"default": outcome})
    register_resend(sim, receiver_url)

    send_email(client)
    sim.wait_for_callbacks()

    [event] = [r.json() for r in receiver.received() if r.event_type == event_type]
    assert event["data"][detail]
    if outcome == "bounced":
        assert event["data"]["bounce"]["type"] == "Permanent"
        assert event["data"]["bounce"]["subType"] == "General"
        assert event["data"]["bounce"]["message"]
    if outcome == "failed":
        assert event["data"]["failed"]["reason"]


def test_first_matching_rule_decides_ignoring_case(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    receiver: Receiver,
    receiver_url: str,
) -> None:
    callbacks(
        configure,
        email={
            "default": "delivered",
            "rules": [
                {"recipient": "*@BOUNCE.example", "outcome": "bounced"},
                {"recipient": "*@bounce.*", "outcome": "complained"},
                {"recipient": "spam?@example.com", "outcome": "complained"},
            ],
        },
    )
    register_resend(sim, receiver_url)

    bounced = send_email(client, to="Lead@Bounce.Example")
    complained = send_email(client, to="spam1@example.com")
    delivered = send_email(client, to="spam12@example.com")
    sim.wait_for_callbacks()

    by_email: dict[str, list[str]] = {}
    for r in receiver.received():
        by_email.setdefault(r.json()["data"]["email_id"], []).append(r.event_type)
    assert by_email == {
        bounced: RESEND_SEQUENCES["bounced"],
        complained: RESEND_SEQUENCES["complained"],
        delivered: RESEND_SEQUENCES["delivered"],
    }


def test_each_batch_member_gets_its_own_events(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    receiver: Receiver,
    receiver_url: str,
) -> None:
    callbacks(configure, email={"rules": [{"recipient": "*@bounce.example", "outcome": "bounced"}]})
    register_resend(sim, receiver_url)
    email = {"from": "hello@acme.example", "subject": "Hi", "text": "Hi"}

    response = client.post(
        "/emails/batch",
        json=[{**email, "to": "a@example.com"}, {**email, "to": "b@bounce.example"}],
        headers={"Authorization": f"Bearer {RESEND_KEY}"},
    )
    sim.wait_for_callbacks()

    first, second = (item["id"] for item in response.json()["data"])
    events = [(r.json()["data"]["email_id"], r.event_type) for r in receiver.received()]
    assert sorted(t for i, t in events if i == first) == sorted(RESEND_SEQUENCES["delivered"])
    assert sorted(t for i, t in events if i == second) == sorted(RESEND_SEQUENCES["bounced"])


def test_idempotent_replay_sends_no_second_set_of_events(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    receiver: Receiver,
    receiver_url: str,
) -> None:
    callbacks(configure)
    register_resend(sim, receiver_url)
    headers = {"Authorization": f"Bearer {RESEND_KEY}", "Idempotency-Key": "comm-1"}
    email = {"from": "hello@acme.example", "to": "lead@example.com", "subject": "Hi"}

    first = client.post("/emails", json=email, headers=headers)
    replay = client.post("/emails", json=email, headers=headers)
    sim.wait_for_callbacks()

    assert replay.json() == first.json()
    assert [r.event_type for r in receiver.received()] == RESEND_SEQUENCES["delivered"]


# --- SendGrid events --------------------------------------------------------------------------


@pytest.mark.parametrize(("outcome", "events"), SENDGRID_SEQUENCES.items())
def test_sendgrid_outcome_is_its_event_sequence(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    receiver: Receiver,
    receiver_url: str,
    outcome: str,
    events: list[str],
) -> None:
    callbacks(configure, email={"default": outcome})
    register_sendgrid(sim, receiver_url)

    message_id = send_mail(client)
    sim.wait_for_callbacks()

    received = receiver.received("sendgrid")
    assert [r.event_type for r in received] == events
    assert all(r.verified for r in received), [(r.problem, r.sdk_problem) for r in received]
    bodies = [r.json()[0] for r in received]
    assert all(b["sg_message_id"].startswith(f"{message_id}.") for b in bodies)
    assert len({b["sg_event_id"] for b in bodies}) == len(events)


def test_sendgrid_events_carry_the_documented_fields_and_custom_args(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    receiver: Receiver,
    receiver_url: str,
) -> None:
    callbacks(configure)
    register_sendgrid(sim, receiver_url)

    message_id = send_mail(
        client,
        [{"to": [{"email": "lead@example.com"}], "custom_args": {"communication_id": "c-7"}}],
        custom_args={"communication_id": "c-top", "tenant": "acme"},
        categories=["welcome"],
    )
    sim.wait_for_callbacks()

    received = receiver.received()
    assert all(r.body.endswith(b"\r\n") for r in received)
    assert all(r.body.startswith(b"[") for r in received)
    processed, delivered = (r.json() for r in received)
    assert len(processed) == 1
    event = processed[0]
    assert event["email"] == "lead@example.com"
    assert event["event"] == "processed"
    assert isinstance(event["timestamp"], int)
    assert abs(event["timestamp"] - time.time()) < 60
    assert event["smtp-id"] == f"<{message_id}@ismtpd-simulator.sendgrid.net>"
    assert event["communication_id"] == "c-7"  # the personalization's value wins
    assert event["tenant"] == "acme"
    assert event["category"] == ["welcome"]
    assert delivered[0]["sg_message_id"] == event["sg_message_id"]
    assert delivered[0]["sg_event_id"] != event["sg_event_id"]
    assert "x-twilio-email-event-webhook-timestamp" in received[0].headers


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        ("bounced", {"type": "bounce", "status": "5.1.1"}),
        ("failed", {"reason": "Bounced Address"}),
        ("suppressed", {"reason": "Unsubscribed Address"}),
    ],
)
def test_sendgrid_failure_events_say_why(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    receiver: Receiver,
    receiver_url: str,
    outcome: str,
    expected: dict[str, str],
) -> None:
    callbacks(configure, email={"default": outcome})
    register_sendgrid(sim, receiver_url)

    send_mail(client)
    sim.wait_for_callbacks()

    last = receiver.received()[-1].json()[0]
    assert last.items() >= expected.items()
    if outcome == "bounced":
        assert last["reason"]


def test_each_sendgrid_recipient_gets_events_of_its_own(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    receiver: Receiver,
    receiver_url: str,
) -> None:
    callbacks(configure, email={"rules": [{"recipient": "*@bounce.example", "outcome": "bounced"}]})
    register_sendgrid(sim, receiver_url)

    send_mail(
        client,
        [
            {"to": [{"email": "a@example.com"}, {"email": "b@bounce.example"}]},
            {"to": [{"email": "c@example.com"}]},
        ],
    )
    sim.wait_for_callbacks()

    by_email: dict[str, list[str]] = {}
    message_ids: dict[str, set[str]] = {}
    for r in receiver.received():
        [event] = r.json()
        by_email.setdefault(event["email"], []).append(event["event"])
        message_ids.setdefault(event["email"], set()).add(event["sg_message_id"])
    assert by_email == {
        "a@example.com": SENDGRID_SEQUENCES["delivered"],
        "b@bounce.example": SENDGRID_SEQUENCES["bounced"],
        "c@example.com": SENDGRID_SEQUENCES["delivered"],
    }
    assert all(len(ids) == 1 for ids in message_ids.values())
    assert len(set.union(*message_ids.values())) == 3


# --- Twilio status callbacks ------------------------------------------------------------------


@pytest.mark.parametrize(("outcome", "statuses"), TWILIO_SEQUENCES.items())
def test_twilio_outcome_is_its_status_sequence_signed_for_the_callback_url(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    receiver: Receiver,
    receiver_url: str,
    outcome: str,
    statuses: list[tuple[str, str | None]],
) -> None:
    callbacks(configure, sms={"default": outcome})
    status_callback = f"{receiver_url}/twilio/status?tenant=acme&kind=sms"

    sid = send_sms(client, status_callback)
    sim.wait_for_callbacks()

    received = receiver.received("twilio")
    assert all(r.verified for r in received), [(r.problem, r.sdk_problem) for r in received]
    assert all(r.url == status_callback for r in received)
    forms = [r.form() for r in received]
    assert [(f["MessageStatus"], f.get("ErrorCode")) for f in forms] == statuses
    for form in forms:
        assert form["MessageSid"] == form["SmsSid"] == sid
        assert form["SmsStatus"] == form["MessageStatus"]
        assert form["AccountSid"] == TWILIO_SID
        assert (form["From"], form["To"]) == ("+14155550199", "+14155550100")
        assert form["ApiVersion"] == "2010-04-01"
    assert received[0].headers["content-type"] == "application/x-www-form-urlencoded"


def test_sms_rules_match_the_to_number(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    receiver: Receiver,
    receiver_url: str,
) -> None:
    callbacks(configure, sms={"rules": [{"recipient": "+1415555010?", "outcome": "undelivered"}]})

    send_sms(client, f"{receiver_url}/twilio/status", to="+14155550101")
    send_sms(client, f"{receiver_url}/twilio/status", to="+14155550111")
    sim.wait_for_callbacks()

    finals = {r.form()["To"]: r.form()["MessageStatus"] for r in receiver.received()}
    assert finals == {"+14155550101": "undelivered", "+14155550111": "delivered"}


# --- no target, no callback -------------------------------------------------------------------


def test_messages_without_a_registration_or_status_callback_get_no_callback(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    receiver: Receiver,
    receiver_url: str,
) -> None:
    callbacks(configure)
    sim.register_webhook("resend", "re_another_key", f"{receiver_url}/resend/other")

    send_email(client)
    send_mail(client)
    send_sms(client, None)
    attempts = sim.wait_for_callbacks()

    assert attempts == []
    assert receiver.received() == []


def test_refused_send_gets_no_callback(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    receiver: Receiver,
    receiver_url: str,
) -> None:
    callbacks(configure)
    register_resend(sim, receiver_url)

    response = client.post(
        "/emails",
        json={"from": "hello@acme.example", "to": "not-an-address", "subject": "Hi"},
        headers={"Authorization": f"Bearer {RESEND_KEY}"},
    )

    assert response.status_code == 422
    assert sim.wait_for_callbacks() == []


# --- duplicates, order, retries ---------------------------------------------------------------


def test_duplicates_repeat_each_event_with_the_same_id_and_bytes(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    receiver: Receiver,
    receiver_url: str,
) -> None:
    callbacks(configure, duplicates=2)
    register_resend(sim, receiver_url)

    send_email(client)
    attempts = sim.wait_for_callbacks()

    received = receiver.received()
    assert [r.event_type for r in received] == ["email.sent"] * 3 + ["email.delivered"] * 3
    assert all(r.verified for r in received)
    for copies in (received[:3], received[3:]):
        assert len({r.headers["svix-id"] for r in copies}) == 1
        assert len({r.body for r in copies}) == 1
    assert [a.duplicate for a in attempts] == [0, 1, 2, 0, 1, 2]
    assert {a.attempt for a in attempts} == {1}


def test_sendgrid_duplicates_keep_the_event_id(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    receiver: Receiver,
    receiver_url: str,
) -> None:
    callbacks(configure, duplicates=1)
    register_sendgrid(sim, receiver_url)

    send_mail(client)
    sim.wait_for_callbacks()

    events = [r.json()[0] for r in receiver.received()]
    assert [e["sg_event_id"] for e in events][::2] == [e["sg_event_id"] for e in events][1::2]
    assert all(r.verified for r in receiver.received())


def test_out_of_order_delivers_the_last_event_first_with_true_timestamps(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    receiver: Receiver,
    receiver_url: str,
) -> None:
    callbacks(configure, out_of_order=True, email={"default": "complained"})
    register_resend(sim, receiver_url)

    send_email(client)
    sim.wait_for_callbacks()

    received = [r.json() for r in receiver.received()]
    assert [e["type"] for e in received] == [
        "email.complained",
        "email.delivered",
        "email.sent",
    ]
    by_time = sorted(received, key=lambda e: e["created_at"])
    assert [e["type"] for e in by_time] == RESEND_SEQUENCES["complained"]


def test_twilio_out_of_order_reports_delivered_before_sent(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    receiver: Receiver,
    receiver_url: str,
) -> None:
    callbacks(configure, out_of_order=True)

    send_sms(client, f"{receiver_url}/twilio/status")
    sim.wait_for_callbacks()

    assert [r.event_type for r in receiver.received()] == ["delivered", "sent"]


def test_a_500_from_the_receiver_is_retried_with_the_same_event(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    receiver: Receiver,
    receiver_url: str,
) -> None:
    callbacks(configure)
    register_resend(sim, receiver_url)
    receiver.answer_next(Answer(500))

    send_email(client)
    attempts = sim.wait_for_callbacks()

    assert [(a.event_type, a.attempt, a.status) for a in attempts] == [
        ("email.sent", 1, 500),
        ("email.sent", 2, 200),
        ("email.delivered", 1, 200),
    ]
    first, retry, _ = receiver.received()
    assert retry.headers["svix-id"] == first.headers["svix-id"]
    assert retry.body == first.body
    assert retry.verified


def test_delivery_is_given_up_after_max_attempts_and_the_next_event_still_goes(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    receiver: Receiver,
    receiver_url: str,
) -> None:
    callbacks(configure, max_attempts=2)
    register_sendgrid(sim, receiver_url)
    receiver.answer_next(Answer(503), Answer(503))

    send_mail(client)
    attempts = sim.wait_for_callbacks()

    assert [(a.event_type, a.attempt, a.status) for a in attempts] == [
        ("processed", 1, 503),
        ("processed", 2, 503),
        ("delivered", 1, 200),
    ]


def test_connection_refused_is_recorded_and_retried(
    client: httpx.Client, sim: SimulatorControl, configure: Configure
) -> None:
    callbacks(configure, max_attempts=3)
    url = f"http://127.0.0.1:{closed_port()}/twilio/status"

    sid = send_sms(client, url)
    attempts = sim.wait_for_callbacks()

    assert [(a.event_type, a.attempt) for a in attempts] == [
        ("sent", 1),
        ("sent", 2),
        ("sent", 3),
        ("delivered", 1),
        ("delivered", 2),
        ("delivered", 3),
    ]
    assert all(a.status is None for a in attempts)
    assert all(a.error is not None and "ConnectError" in a.error for a in attempts)
    assert {a.message_id for a in attempts} == {sid}


def test_a_redirect_is_a_failure_and_is_not_followed(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    receiver: Receiver,
    receiver_url: str,
) -> None:
    callbacks(configure)
    register_resend(sim, receiver_url)
    receiver.answer_next(Answer(302))

    send_email(client)
    attempts = sim.wait_for_callbacks()

    assert [(a.attempt, a.status) for a in attempts[:2]] == [(1, 302), (2, 200)]
    assert {r.url for r in receiver.received()} == {f"{receiver_url}/resend/acme"}


def test_a_receiver_slower_than_the_timeout_is_retried(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    receiver: Receiver,
    receiver_url: str,
) -> None:
    callbacks(configure, timeout_seconds=0.2)
    register_resend(sim, receiver_url)
    receiver.answer_next(Answer(200, delay=1.0))

    send_email(client)
    attempts = sim.wait_for_callbacks()

    first, retry = attempts[:2]
    assert (first.attempt, first.status) == (1, None)
    assert first.error is not None
    assert "Timeout" in first.error
    assert (retry.attempt, retry.status) == (2, 200)


# --- timing, waiting and inspection -----------------------------------------------------------


def test_events_wait_their_delay_without_holding_up_the_send(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    receiver: Receiver,
    receiver_url: str,
) -> None:
    callbacks(configure, delay_seconds=0.4)
    register_resend(sim, receiver_url)

    started = time.monotonic()
    send_email(client)
    answered_after = time.monotonic() - started
    before = client.get("/_sim/callbacks").json()
    attempts = sim.wait_for_callbacks()

    assert answered_after < 0.4
    assert before == {"callbacks": [], "pending": 1}
    [message] = sim.messages()
    sent, delivered = attempts
    assert (sent.sent_at - message.received_at).total_seconds() >= 0.39
    assert (delivered.sent_at - sent.sent_at).total_seconds() >= 0.35


def test_jitter_keeps_each_message_in_order(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    receiver: Receiver,
    receiver_url: str,
) -> None:
    callbacks(configure, jitter_seconds=0.02, email={"default": "complained"})
    register_resend(sim, receiver_url)

    send_email(client)
    sim.wait_for_callbacks()

    received = [r.json() for r in receiver.received()]
    assert [e["type"] for e in received] == RESEND_SEQUENCES["complained"]
    assert [e["created_at"] for e in received] == sorted(e["created_at"] for e in received)


def test_wait_for_callbacks_raises_when_callbacks_are_still_due(
    client: httpx.Client, sim: SimulatorControl, configure: Configure, receiver_url: str
) -> None:
    callbacks(configure, delay_seconds=5)
    register_resend(sim, receiver_url)
    send_email(client)

    with pytest.raises(TimeoutError, match="1 message"):
        sim.wait_for_callbacks(timeout=0.05)


@pytest.mark.parametrize("wait", ["soon", "-1", "61", "nan"])
def test_bad_wait_is_400(client: httpx.Client, wait: str) -> None:
    response = client.get("/_sim/callbacks", params={"wait": wait})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_parameter"


def test_reset_cancels_callbacks_still_due(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    receiver: Receiver,
    receiver_url: str,
) -> None:
    callbacks(configure, delay_seconds=0.3)
    register_resend(sim, receiver_url)
    send_email(client)

    sim.reset()

    assert sim.wait_for_callbacks(timeout=1) == []
    assert receiver.received() == []
    assert [w.provider for w in sim.webhooks()] == ["resend"]


def test_callbacks_are_listed_filtered_and_cleared(
    client: httpx.Client,
    sim: SimulatorControl,
    configure: Configure,
    receiver: Receiver,
    receiver_url: str,
) -> None:
    callbacks(configure)
    register_resend(sim, receiver_url)
    email_id = send_email(client)
    sid = send_sms(client, f"{receiver_url}/twilio/status")
    sim.wait_for_callbacks()

    twilio = sim.callbacks("twilio")
    resend = sim.callbacks(message_id=email_id)
    delivered = sim.callbacks(event_type="delivered")
    cleared = client.delete("/_sim/callbacks").json()

    assert {a.message_id for a in twilio} == {sid}
    assert [a.event_type for a in resend] == ["email.sent", "email.delivered"]
    assert [a.provider for a in delivered] == ["twilio"]
    assert twilio[0].url == f"{receiver_url}/twilio/status"
    assert twilio[0].event_id == f"{sid}:sent"
    assert twilio[0].recipient == "+14155550100"
    assert twilio[0].headers["x-twilio-signature"]
    assert "MessageStatus=sent" in twilio[0].body
    assert cleared == {"cleared": 4}
    assert sim.callbacks() == []


def test_shutdown_cancels_callbacks_still_due(receiver: Receiver, receiver_url: str) -> None:
    config = SimulatorConfig.model_validate(
        {
            "callbacks": {
                "delay_seconds": 30,
                "webhooks": [
                    {
                        "provider": "resend",
                        "api_key": RESEND_KEY,
                        "url": f"{receiver_url}/resend/acme",
                        "secret": SECRET,
                    }
                ],
            }
        }
    )
    with running_simulator(config) as url, httpx.Client(base_url=url) as own:
        send_email(own)
        pending = own.get("/_sim/callbacks").json()["pending"]
        started = time.monotonic()

    assert pending == 1
    assert time.monotonic() - started < 5
    assert receiver.received() == []


# --- the dispatcher on its own ----------------------------------------------------------------


def _callback(url: str, sign: Any = None, due: float = 0.0) -> Callback:
    return Callback(
        event=CallbackEvent(
            provider="twilio",
            url=url,
            event_type="sent",
            event_id="SM1:sent",
            message_id="SM1",
            recipient="+14155550100",
        ),
        due=due,
        body=b"MessageStatus=sent",
        headers={"content-type": "application/x-www-form-urlencoded"},
        sign=sign or (lambda _unix_time: {}),
    )


async def test_a_callback_that_fails_unexpectedly_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dispatcher = CallbackDispatcher(lambda prefix: f"{prefix}_1")

    def broken(_unix_time: int) -> dict[str, str]:
        raise RuntimeError("signing key lost")

    dispatcher.schedule([_callback("http://127.0.0.1:9/", sign=broken)], CallbacksConfig())
    done = await dispatcher.wait(2)
    await dispatcher.close()

    assert done
    assert "delivery callbacks failed" in caplog.text
    assert "signing key lost" in caplog.text
    assert dispatcher.pending == 0


async def test_close_cancels_callbacks_still_due() -> None:
    dispatcher = CallbackDispatcher(lambda prefix: f"{prefix}_1")
    dispatcher.schedule([_callback("http://127.0.0.1:9/", due=30)], CallbacksConfig())

    await dispatcher.close()

    assert dispatcher.pending == 0
    assert dispatcher.attempts == []
