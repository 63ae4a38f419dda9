"""The Resend, SendGrid and Twilio adapters against the provider simulator.

Each adapter sends on a real ``httpx.AsyncClient`` to a simulator served for this module
(``lqs.simulator``), which speaks the provider's wire format and records every request.
The checks read what the simulator received (the exact request) and how each of its
answers, including the injected faults, is classified. No database is needed.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from lqs.domain.delivery import ResendSettings, SendGridSettings, TwilioSettings, Verdict
from lqs.providers.base import OutboundMessage, ProviderConfigError, SendResult
from lqs.providers.resend import ResendProvider
from lqs.providers.sendgrid import SendGridProvider
from lqs.providers.twilio import TwilioProvider
from lqs.simulator import SimulatorConfig, SimulatorControl, running_simulator
from lqs.simulator.records import RequestRecord

RESEND_KEY = "re_test_adapter_key"
SENDGRID_KEY = "SG.test-adapter-key"
TWILIO_SID = "AC" + "0123456789abcdef" * 2
TWILIO_TOKEN = "test_auth_token"
SERVICE_SID = "MG" + "fedcba9876543210" * 2
SENDER = "lqs@sender.example"
RECIPIENT = "ann.lee@bigco.example"
FROM_NUMBER = "+14155550199"
TO_NUMBER = "+14155550100"
CALLBACK = "https://lqs.example/webhooks/twilio"
CLIENT_TIMEOUT = 0.3
"""The impatient client's timeout: injected hangs last longer (``HANG``)."""
HANG = 1.0


# --- the simulator, clients, settings and messages -----------------------------------


@pytest.fixture(scope="module")
def simulator() -> Iterator[str]:
    with running_simulator(SimulatorConfig(seed=11)) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def _control(simulator: str) -> Iterator[SimulatorControl]:
    with SimulatorControl(simulator) as control:
        yield control


@pytest.fixture
def sim(_control: SimulatorControl) -> SimulatorControl:
    """The simulator's control client, reset to the default configuration."""
    _control.configure(SimulatorConfig())
    _control.reset()
    return _control


def configure(sim: SimulatorControl, **sections: Any) -> None:
    """Replace the simulator's configuration: ``configure(sim, resend={...})``."""
    sim.configure(SimulatorConfig.model_validate(sections))


@pytest.fixture(scope="module")
async def impatient() -> AsyncIterator[httpx.AsyncClient]:
    """A client that gives up long before an injected hang ends."""
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        yield client


def resend_settings(base_url: str, **fields: Any) -> ResendSettings:
    return ResendSettings.model_validate(
        {"api_key": RESEND_KEY, "from_address": SENDER, "base_url": base_url, **fields}
    )


def sendgrid_settings(base_url: str, **fields: Any) -> SendGridSettings:
    return SendGridSettings.model_validate(
        {"api_key": SENDGRID_KEY, "from_address": SENDER, "base_url": base_url, **fields}
    )


def twilio_settings(base_url: str, **fields: Any) -> TwilioSettings:
    values: dict[str, Any] = {
        "account_sid": TWILIO_SID,
        "auth_token": TWILIO_TOKEN,
        "from_number": FROM_NUMBER,
        "base_url": base_url,
    }
    values.update(fields)
    return TwilioSettings.model_validate(values)


def email(**fields: Any) -> OutboundMessage:
    lead_id = uuid.uuid4()
    values: dict[str, Any] = {
        "communication_id": uuid.uuid4(),
        "client_id": uuid.uuid4(),
        "lead_id": lead_id,
        "channel": "email",
        "recipient": RECIPIENT,
        "subject": "Your demo with Acme",
        "content": "<p>Hi Ann, thanks for your interest.</p>",
        "headers": {"List-Unsubscribe": "<mailto:unsubscribe@sender.example>"},
        "metadata": {"lead_id": str(lead_id), "campaign_id": "spring-2026"},
    }
    values.update(fields)
    return OutboundMessage(**values)


def sms(**fields: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "communication_id": uuid.uuid4(),
        "client_id": uuid.uuid4(),
        "lead_id": uuid.uuid4(),
        "channel": "sms",
        "recipient": TO_NUMBER,
        "subject": None,
        "content": "Hi Ann, your demo is booked for Tuesday.",
    }
    values.update(fields)
    return OutboundMessage(**values)


PROVIDERS = ["resend", "sendgrid", "twilio"]
"""Each name is both the adapter and the simulator's section for it."""


async def send_with(name: str, http: httpx.AsyncClient, base_url: str) -> SendResult:
    """One ordinary message through the adapter ``name``."""
    if name == "resend":
        return await ResendProvider(http).send(resend_settings(base_url), email())
    if name == "sendgrid":
        return await SendGridProvider(http).send(sendgrid_settings(base_url), email())
    return await TwilioProvider(http).send(twilio_settings(base_url), sms())


def the_request(sim: SimulatorControl, provider: str) -> RequestRecord:
    [request] = sim.requests(provider)
    return request


def wait_until(condition: Any, *, deadline: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.02)


# --- Resend: the request ---------------------------------------------------------------


async def test_resend_gets_one_json_email_keyed_by_its_communication_id(
    sim: SimulatorControl, http: httpx.AsyncClient, simulator: str
) -> None:
    message = email()

    result = await ResendProvider(http).send(resend_settings(simulator), message)

    request = the_request(sim, "resend")
    assert (request.method, request.path) == ("POST", "/emails")
    assert request.headers["authorization"] == f"Bearer {RESEND_KEY}"
    assert request.headers["idempotency-key"] == str(message.communication_id)
    assert request.headers["content-type"] == "application/json"
    assert request.body is not None
    assert json.loads(request.body) == {
        "from": SENDER,
        "to": [RECIPIENT],
        "subject": "Your demo with Acme",
        "html": "<p>Hi Ann, thanks for your interest.</p>",
        "tags": [
            {"name": "communication_id", "value": str(message.communication_id)},
            {"name": "lead_id", "value": str(message.lead_id)},
            {"name": "campaign_id", "value": "spring-2026"},
        ],
        "headers": {"List-Unsubscribe": "<mailto:unsubscribe@sender.example>"},
    }
    [stored] = sim.messages("resend")
    assert result.verdict is Verdict.ACCEPTED
    assert (result.http_status, result.external_id) == (200, stored.provider_message_id)
    assert result.response == {"id": stored.provider_message_id}
    assert (result.rate_limited, result.error_code) == (False, None)


async def test_resend_tags_keep_only_the_characters_resend_allows(
    sim: SimulatorControl, http: httpx.AsyncClient, simulator: str
) -> None:
    message = email(
        metadata={"campaign name": "Spring sale! été", "communication_id": "not-this-one"}
    )

    result = await ResendProvider(http).send(resend_settings(simulator), message)

    assert result.accepted  # the simulator refuses tags outside [A-Za-z0-9_-] with a 422
    [stored] = sim.messages("resend")
    assert stored.tags == {
        "communication_id": str(message.communication_id),
        "campaign_name": "Spring_sale___t_",
    }


async def test_resend_key_with_surrounding_whitespace_is_sent_trimmed(
    sim: SimulatorControl, http: httpx.AsyncClient, simulator: str
) -> None:
    settings = resend_settings(simulator, api_key=f"  {RESEND_KEY}\n")

    result = await ResendProvider(http).send(settings, email())

    assert result.accepted
    assert the_request(sim, "resend").headers["authorization"] == f"Bearer {RESEND_KEY}"


# --- Resend: how each answer is classified ---------------------------------------------


@pytest.mark.parametrize(
    ("section", "status", "name", "verdict"),
    [
        pytest.param(
            {"faults": {"script": ["401"]}}, 401, "missing_api_key", Verdict.PERMANENT, id="401"
        ),
        pytest.param(
            {"api_keys": ["re_another_key"]}, 403, "invalid_api_key", Verdict.PERMANENT, id="403"
        ),
        pytest.param(
            {"verified_domains": ["elsewhere.example"]},
            403,
            "validation_error",
            Verdict.PERMANENT,
            id="403-unverified-domain",
        ),
        pytest.param(
            {"invalid_recipients": [RECIPIENT]},
            422,
            "validation_error",
            Verdict.PERMANENT,
            id="422-invalid-recipient",
        ),
        pytest.param(
            {"faults": {"script": ["400"]}}, 400, "validation_error", Verdict.PERMANENT, id="400"
        ),
        pytest.param(
            {"faults": {"script": ["409"]}},
            409,
            "concurrent_idempotent_requests",
            Verdict.TRANSIENT,
            id="409-concurrent",
        ),
        pytest.param(
            {"faults": {"script": ["500"]}}, 500, "application_error", Verdict.TRANSIENT, id="500"
        ),
        pytest.param(
            {"faults": {"script": ["503"]}},
            503,
            "internal_server_error",
            Verdict.TRANSIENT,
            id="503",
        ),
    ],
)
async def test_resend_errors_are_classified_with_the_providers_name_and_message(
    sim: SimulatorControl,
    http: httpx.AsyncClient,
    simulator: str,
    section: dict[str, Any],
    status: int,
    name: str,
    verdict: Verdict,
) -> None:
    configure(sim, resend=section)

    result = await ResendProvider(http).send(resend_settings(simulator), email())

    assert (result.verdict, result.http_status, result.error_code) == (verdict, status, name)
    assert result.response["name"] == name
    assert result.error_message == f"resend {status} {name}: {result.response['message']}"
    assert result.external_id is None
    assert sim.messages("resend") == []


async def test_resend_same_key_with_another_payload_is_permanent(
    sim: SimulatorControl, http: httpx.AsyncClient, simulator: str
) -> None:
    provider, settings = ResendProvider(http), resend_settings(simulator)
    first = email()
    await provider.send(settings, first)

    result = await provider.send(settings, email(communication_id=first.communication_id))

    assert (result.verdict, result.http_status) == (Verdict.PERMANENT, 409)
    assert result.error_code == "invalid_idempotent_request"
    assert result.error_message is not None
    assert "different request payload" in result.error_message
    assert len(sim.messages("resend")) == 1


async def test_resend_429_is_transient_rate_limited_with_retry_after(
    sim: SimulatorControl, http: httpx.AsyncClient, simulator: str
) -> None:
    configure(sim, resend={"faults": {"script": ["429"], "retry_after_seconds": 7}})

    result = await ResendProvider(http).send(resend_settings(simulator), email())

    assert (result.verdict, result.http_status) == (Verdict.TRANSIENT, 429)
    assert (result.error_code, result.retry_after, result.rate_limited) == (
        "rate_limit_exceeded",
        7.0,
        True,
    )


async def test_resend_enforced_rate_limit_is_a_transient_429(
    sim: SimulatorControl, http: httpx.AsyncClient, simulator: str
) -> None:
    configure(sim, resend={"rate_limit_per_second": 1, "enforce_rate_limit": True})
    provider, settings = ResendProvider(http), resend_settings(simulator)

    # Ten sends span fewer than ten one-second windows: one window sees a second send.
    for _ in range(10):
        result = await provider.send(settings, email())
        if not result.accepted:
            break

    assert (result.verdict, result.http_status) == (Verdict.TRANSIENT, 429)
    assert (result.error_code, result.rate_limited) == ("rate_limit_exceeded", True)
    assert result.retry_after == 1.0


async def test_resend_success_that_uses_up_the_window_is_rate_limited(
    sim: SimulatorControl, http: httpx.AsyncClient, simulator: str
) -> None:
    configure(sim, resend={"rate_limit_per_second": 1})

    result = await ResendProvider(http).send(resend_settings(simulator), email())

    assert result.accepted
    assert the_request(sim, "resend").status == 200
    # ratelimit-remaining: 0, ratelimit-reset: 1 (seconds)
    assert (result.rate_limited, result.retry_after) == (True, 1.0)


# --- Resend: idempotency end to end ----------------------------------------------------


async def test_resend_sending_the_same_message_twice_sends_it_once(
    sim: SimulatorControl, http: httpx.AsyncClient, simulator: str
) -> None:
    provider, settings, message = ResendProvider(http), resend_settings(simulator), email()

    first = await provider.send(settings, message)
    second = await provider.send(settings, message)

    assert first.accepted
    assert second.accepted
    assert first.external_id == second.external_id
    [stored] = sim.messages("resend")
    assert stored.provider_message_id == first.external_id
    assert [r.outcome for r in sim.requests("resend")] == ["accepted", "replayed"]
    assert sim.idempotency_counts() == {str(message.communication_id): 1}


async def test_resend_retry_after_a_dropped_answer_returns_the_first_id(
    sim: SimulatorControl, http: httpx.AsyncClient, simulator: str
) -> None:
    configure(sim, resend={"faults": {"script": ["drop"]}})
    provider, settings, message = ResendProvider(http), resend_settings(simulator), email()

    dropped = await provider.send(settings, message)
    retried = await provider.send(settings, message)

    assert (dropped.verdict, dropped.error_code) == (Verdict.TRANSIENT, "connection_dropped")
    [stored] = sim.messages("resend")  # accepted before the connection broke
    assert retried.accepted
    assert retried.external_id == stored.provider_message_id


async def test_resend_retry_while_the_first_request_hangs_waits_then_replays(
    sim: SimulatorControl,
    http: httpx.AsyncClient,
    impatient: httpx.AsyncClient,
    simulator: str,
) -> None:
    configure(sim, resend={"faults": {"script": ["hang"], "hang_seconds": HANG}})
    settings, message = resend_settings(simulator), email()

    timed_out = await ResendProvider(impatient).send(settings, message)
    in_flight = await ResendProvider(http).send(settings, message)
    wait_until(lambda: sim.requests("resend")[0].status is not None)
    replayed = await ResendProvider(http).send(settings, message)

    assert (timed_out.verdict, timed_out.error_code) == (Verdict.TRANSIENT, "timeout")
    assert (in_flight.verdict, in_flight.http_status) == (Verdict.TRANSIENT, 409)
    assert in_flight.error_code == "concurrent_idempotent_requests"
    [stored] = sim.messages("resend")
    assert replayed.accepted
    assert replayed.external_id == stored.provider_message_id


# --- SendGrid --------------------------------------------------------------------------


async def test_sendgrid_gets_one_personalization_and_the_communication_id_in_custom_args(
    sim: SimulatorControl, http: httpx.AsyncClient, simulator: str
) -> None:
    message = email()

    result = await SendGridProvider(http).send(sendgrid_settings(simulator), message)

    request = the_request(sim, "sendgrid")
    assert (request.method, request.path) == ("POST", "/v3/mail/send")
    assert request.headers["authorization"] == f"Bearer {SENDGRID_KEY}"
    assert "idempotency-key" not in request.headers  # SendGrid has none
    assert request.body is not None
    assert json.loads(request.body) == {
        "personalizations": [{"to": [{"email": RECIPIENT}]}],
        "from": {"email": SENDER},
        "subject": "Your demo with Acme",
        "content": [{"type": "text/html", "value": "<p>Hi Ann, thanks for your interest.</p>"}],
        "custom_args": {
            "lead_id": str(message.lead_id),
            "campaign_id": "spring-2026",
            "communication_id": str(message.communication_id),
        },
        "headers": {"List-Unsubscribe": "<mailto:unsubscribe@sender.example>"},
    }
    [stored] = sim.messages("sendgrid")
    assert result.verdict is Verdict.ACCEPTED
    assert (result.http_status, result.response) == (202, None)
    assert result.external_id == stored.provider_message_id  # the X-Message-Id header
    assert stored.custom_args["communication_id"] == str(message.communication_id)


async def test_sendgrid_metadata_cannot_replace_the_communication_id(
    sim: SimulatorControl, http: httpx.AsyncClient, simulator: str
) -> None:
    message = email(metadata={"communication_id": "something-else"})

    await SendGridProvider(http).send(sendgrid_settings(simulator), message)

    [stored] = sim.messages("sendgrid")
    assert stored.custom_args == {"communication_id": str(message.communication_id)}


@pytest.mark.parametrize(
    ("section", "status", "verdict", "detail"),
    [
        pytest.param(
            {"invalid_recipients": [RECIPIENT]},
            400,
            Verdict.PERMANENT,
            "personalizations.0.to.0.email: Does not contain a valid address.",
            id="400-field",
        ),
        pytest.param(
            {"api_keys": ["SG.another-key"]},
            401,
            Verdict.PERMANENT,
            "The provided authorization grant is invalid, expired, or revoked",
            id="401",
        ),
        pytest.param(
            {"forbidden_keys": [SENDGRID_KEY]}, 403, Verdict.PERMANENT, "access forbidden", id="403"
        ),
        pytest.param(
            {"verified_senders": ["elsewhere.example"]},
            403,
            Verdict.PERMANENT,
            "from: The from address does not match a verified Sender Identity.",
            id="403-unverified-sender",
        ),
        pytest.param(
            {"faults": {"script": ["413"]}},
            413,
            Verdict.PERMANENT,
            "request entity too large",
            id="413",
        ),
        pytest.param(
            {"faults": {"script": ["500"]}}, 500, Verdict.TRANSIENT, "internal error", id="500"
        ),
        pytest.param(
            {"faults": {"script": ["502"]}}, 502, Verdict.TRANSIENT, "bad gateway", id="502"
        ),
    ],
)
async def test_sendgrid_errors_are_classified_with_the_field_named(
    sim: SimulatorControl,
    http: httpx.AsyncClient,
    simulator: str,
    section: dict[str, Any],
    status: int,
    verdict: Verdict,
    detail: str,
) -> None:
    configure(sim, sendgrid=section)

    result = await SendGridProvider(http).send(sendgrid_settings(simulator), email())

    assert (result.verdict, result.http_status) == (verdict, status)
    assert result.error_code == f"http_{status}"
    assert result.error_message is not None
    assert result.error_message.startswith(f"sendgrid {status}: {detail}")
    assert result.external_id is None
    assert sim.messages("sendgrid") == []


async def test_sendgrid_429_is_transient_rate_limited_with_retry_after(
    sim: SimulatorControl, http: httpx.AsyncClient, simulator: str
) -> None:
    configure(sim, sendgrid={"faults": {"script": ["429"], "retry_after_seconds": 3}})

    result = await SendGridProvider(http).send(sendgrid_settings(simulator), email())

    assert (result.verdict, result.http_status) == (Verdict.TRANSIENT, 429)
    assert (result.retry_after, result.rate_limited) == (3.0, True)
    assert result.error_message == "sendgrid 429: too many requests"


# The simulator sends no X-RateLimit-* headers, so SendGrid's documented ones are played
# by a transport here (nothing leaves the test).
async def test_sendgrid_429_without_retry_after_waits_until_x_ratelimit_reset() -> None:
    reset = int(time.time()) + 30

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            429,
            headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)},
            json={"errors": [{"field": None, "message": "too many requests"}]},
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        result = await SendGridProvider(http).send(
            sendgrid_settings("https://api.sendgrid.test"), email()
        )

    assert (result.verdict, result.rate_limited) == (Verdict.TRANSIENT, True)
    assert result.retry_after is not None
    assert 28 <= result.retry_after <= 30


async def test_sendgrid_success_with_no_requests_remaining_is_rate_limited() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            202,
            headers={
                "X-Message-Id": "abc123",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int(time.time()) + 10),
            },
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        result = await SendGridProvider(http).send(
            sendgrid_settings("https://api.sendgrid.test"), email()
        )

    assert (result.verdict, result.external_id, result.rate_limited) == (
        Verdict.ACCEPTED,
        "abc123",
        True,
    )
    assert result.retry_after is not None
    assert 8 <= result.retry_after <= 10


# --- Twilio ----------------------------------------------------------------------------


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _form(request: RequestRecord) -> dict[str, list[str]]:
    assert request.body is not None
    return parse_qs(request.body, keep_blank_values=True)


async def test_twilio_gets_a_form_with_basic_auth_and_the_status_callback(
    sim: SimulatorControl, http: httpx.AsyncClient, simulator: str
) -> None:
    settings = twilio_settings(simulator, status_callback_url=CALLBACK)

    message = sms()
    result = await TwilioProvider(http).send(settings, message)

    request = the_request(sim, "twilio")
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
    assert request.headers["authorization"] == _basic(TWILIO_SID, TWILIO_TOKEN)
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert _form(request) == {
        "To": [TO_NUMBER],
        "From": [FROM_NUMBER],
        "Body": ["Hi Ann, your demo is booked for Tuesday."],
        # Our id rides in the callback URL, so a callback finds its message even when
        # the send was never recorded.
        "StatusCallback": [f"{CALLBACK}?lqs_id={message.communication_id}"],
    }
    [stored] = sim.messages("twilio")
    assert result.verdict is Verdict.ACCEPTED
    assert (result.http_status, result.external_id) == (201, stored.provider_message_id)
    assert result.external_id is not None
    assert result.external_id.startswith("SM")
    assert result.response["status"] == "queued"


async def test_twilio_sends_through_the_messaging_service_when_one_is_set(
    sim: SimulatorControl, http: httpx.AsyncClient, simulator: str
) -> None:
    settings = twilio_settings(simulator, from_number=None, messaging_service_sid=SERVICE_SID)

    result = await TwilioProvider(http).send(settings, sms())

    assert _form(the_request(sim, "twilio")) == {
        "To": [TO_NUMBER],
        "MessagingServiceSid": [SERVICE_SID],
        "Body": ["Hi Ann, your demo is booked for Tuesday."],
    }
    assert result.accepted
    assert result.response["status"] == "accepted"


@pytest.mark.parametrize(
    ("section", "status", "code", "verdict"),
    [
        pytest.param(
            {"invalid_recipients": [TO_NUMBER]}, 400, "21211", Verdict.PERMANENT, id="21211-to"
        ),
        pytest.param(
            {"invalid_senders": [FROM_NUMBER]}, 400, "21212", Verdict.PERMANENT, id="21212-from"
        ),
        pytest.param(
            {"accounts": {TWILIO_SID: "another_token"}},
            401,
            "20003",
            Verdict.PERMANENT,
            id="20003-auth",
        ),
        pytest.param({"faults": {"script": ["500"]}}, 500, "20500", Verdict.TRANSIENT, id="500"),
        pytest.param({"faults": {"script": ["503"]}}, 503, "20503", Verdict.TRANSIENT, id="503"),
    ],
)
async def test_twilio_errors_are_classified_with_the_twilio_code(
    sim: SimulatorControl,
    http: httpx.AsyncClient,
    simulator: str,
    section: dict[str, Any],
    status: int,
    code: str,
    verdict: Verdict,
) -> None:
    configure(sim, twilio=section)

    result = await TwilioProvider(http).send(twilio_settings(simulator), sms())

    assert (result.verdict, result.http_status, result.error_code) == (verdict, status, code)
    assert result.error_message == f"twilio {status} {code}: {result.response['message']}"
    assert result.external_id is None
    assert sim.messages("twilio") == []


async def test_twilio_429_is_transient_and_rate_limited(
    sim: SimulatorControl, http: httpx.AsyncClient, simulator: str
) -> None:
    configure(sim, twilio={"faults": {"script": ["429"], "retry_after_seconds": 2}})

    result = await TwilioProvider(http).send(twilio_settings(simulator), sms())

    assert (result.verdict, result.http_status, result.error_code) == (
        Verdict.TRANSIENT,
        429,
        "20429",
    )
    assert (result.rate_limited, result.retry_after) == (True, 2.0)


# --- every adapter: answers that never arrive ------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_connection_dropped_after_acceptance_is_transient(
    sim: SimulatorControl, http: httpx.AsyncClient, simulator: str, provider: str
) -> None:
    configure(sim, **{provider: {"faults": {"script": ["drop"]}}})

    result = await send_with(provider, http, simulator)

    assert (result.verdict, result.error_code) == (Verdict.TRANSIENT, "connection_dropped")
    assert result.http_status is None
    # The provider did accept it: without an idempotency key, the retry sends it again.
    assert len(sim.messages(provider)) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    ("fault", "accepted"), [("timeout", False), ("hang", True)], ids=["timeout", "hang"]
)
async def test_no_answer_within_the_client_timeout_is_transient(
    sim: SimulatorControl,
    impatient: httpx.AsyncClient,
    simulator: str,
    provider: str,
    fault: str,
    accepted: bool,
) -> None:
    configure(sim, **{provider: {"faults": {"script": [fault], "hang_seconds": HANG}}})

    started = time.monotonic()
    result = await send_with(provider, impatient, simulator)

    assert (result.verdict, result.error_code) == (Verdict.TRANSIENT, "timeout")
    assert time.monotonic() - started < HANG
    assert len(sim.messages(provider)) == (1 if accepted else 0)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_refused_connection_is_transient(
    http: httpx.AsyncClient, closed_port: int, provider: str
) -> None:
    result = await send_with(provider, http, f"http://127.0.0.1:{closed_port}")

    assert (result.verdict, result.error_code) == (Verdict.TRANSIENT, "connection_error")
    assert result.http_status is None


# --- what is refused before any request ------------------------------------------------

_EMAIL_PROVIDERS = {
    "resend": (ResendProvider, resend_settings),
    "sendgrid": (SendGridProvider, sendgrid_settings),
}


@pytest.mark.parametrize("provider", sorted(_EMAIL_PROVIDERS))
@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"subject": None}, id="no-subject"),
        pytest.param({"subject": ""}, id="empty-subject"),
        pytest.param({"content": None}, id="no-content"),
        pytest.param({"content": ""}, id="empty-content"),
    ],
)
async def test_an_email_without_subject_or_content_is_refused_before_any_request(
    sim: SimulatorControl,
    http: httpx.AsyncClient,
    simulator: str,
    provider: str,
    fields: dict[str, Any],
) -> None:
    adapter, settings = _EMAIL_PROVIDERS[provider]

    result = await adapter(http).send(settings(simulator), email(**fields))

    assert (result.verdict, result.error_code) == (Verdict.PERMANENT, "invalid_message")
    assert result.http_status is None
    assert result.error_message == "an email needs a subject and content"
    assert sim.requests() == []


@pytest.mark.parametrize("provider", sorted(_EMAIL_PROVIDERS))
@pytest.mark.parametrize(
    "api_key",
    ["", "   ", "re_key\r\nX-Injected: 1", "clé"],
    ids=["empty", "blank", "crlf", "latin"],
)
async def test_an_api_key_that_cannot_be_sent_is_a_config_error(
    sim: SimulatorControl, http: httpx.AsyncClient, simulator: str, provider: str, api_key: str
) -> None:
    # Sent as is, httpx would refuse the header and the failure would look transient.
    adapter, settings = _EMAIL_PROVIDERS[provider]

    with pytest.raises(ProviderConfigError, match=rf"{provider}\.api_key"):
        await adapter(http).send(settings(simulator, api_key=api_key), email())

    assert sim.requests() == []


@pytest.mark.parametrize(
    "content",
    [pytest.param("x" * 1601, id="1601-chars"), pytest.param("", id="empty"), None],
)
async def test_an_sms_over_1600_characters_or_empty_is_refused_before_any_request(
    sim: SimulatorControl, http: httpx.AsyncClient, simulator: str, content: str | None
) -> None:
    result = await TwilioProvider(http).send(twilio_settings(simulator), sms(content=content))

    assert (result.verdict, result.error_code) == (Verdict.PERMANENT, "invalid_message")
    assert result.http_status is None
    assert sim.requests() == []


async def test_an_sms_of_exactly_1600_characters_is_sent(
    sim: SimulatorControl, http: httpx.AsyncClient, simulator: str
) -> None:
    result = await TwilioProvider(http).send(twilio_settings(simulator), sms(content="x" * 1600))

    assert result.accepted
    [stored] = sim.messages("twilio")
    assert stored.body == "x" * 1600
