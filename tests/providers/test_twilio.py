"""Twilio: the SMS adapter against the provider simulator, and its status callbacks
(``X-Twilio-Signature``, events).

The ✓ vectors come from the shared reference wire-formats.md (each provider's published
example); every other key and secret is generated here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from twilio.request_validator import RequestValidator

from lqs.domain.delivery import Verdict
from lqs.domain.events import EventKind
from lqs.providers import twilio
from lqs.providers.base import (
    ProviderConfigError,
    WebhookMalformed,
    WebhookRejected,
)
from lqs.providers.twilio import TwilioProvider
from lqs.simulator import SimulatorControl
from lqs.simulator.records import RequestRecord
from tests.providers.simulated import (
    CALLBACK,
    FROM_NUMBER,
    SERVICE_SID,
    TO_NUMBER,
    TWILIO_SID,
    TWILIO_TOKEN,
    configure,
    sms,
    the_request,
    twilio_settings,
)

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


# Twilio ----------------------------------------------------------------------------------

TW_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TW_TOKEN = "12345"
TW_PARAMS = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Caller", "+12349013030"),
    ("Digits", "1234"),
    ("From", "+12349013030"),
    ("To", "+18005551212"),
]
TW_SIGNATURE = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def twilio_sign(url: str, params: list[tuple[str, str]], token: str) -> str:
    """The signature as Twilio's own SDK computes it."""
    return str(RequestValidator(token).compute_signature(url, dict(params)))


def test_twilio_vector_verifies() -> None:
    twilio.verify_webhook(TW_URL, TW_PARAMS, TW_SIGNATURE, TW_TOKEN)


def test_twilio_signer_in_these_tests_reproduces_the_vector() -> None:
    assert twilio_sign(TW_URL, TW_PARAMS, TW_TOKEN) == TW_SIGNATURE


@pytest.mark.parametrize(
    ("signed_url", "received_url"),
    [
        (TW_URL, "https://mycompany.com:443/myapp.php?foo=1&bar=2"),
        ("https://mycompany.com:443/myapp.php?foo=1&bar=2", TW_URL),
        ("http://mycompany.com/status", "http://mycompany.com:80/status"),
        ("http://mycompany.com:80/status", "http://mycompany.com/status"),
        ("https://user@mycompany.com/status", "https://user@mycompany.com:443/status"),
        ("https://[2001:db8::1]/status", "https://[2001:db8::1]:443/status"),
        ("https://[2001:db8::1]:443/status", "https://[2001:db8::1]/status"),
    ],
)
def test_twilio_default_port_may_be_added_or_removed(signed_url: str, received_url: str) -> None:
    signature = twilio_sign(signed_url, TW_PARAMS, TW_TOKEN)

    twilio.verify_webhook(received_url, TW_PARAMS, signature, TW_TOKEN)


def test_twilio_vector_verifies_with_the_default_port() -> None:
    with_port = TW_URL.replace("mycompany.com", "mycompany.com:443")

    twilio.verify_webhook(with_port, TW_PARAMS, TW_SIGNATURE, TW_TOKEN)


@pytest.mark.parametrize(
    ("signed_url", "received_url"),
    [
        ("https://mycompany.com/status", "https://mycompany.com:8443/status"),
        ("https://mycompany.com:8443/status", "https://mycompany.com/status"),
        ("https://mycompany.com/status", "https://mycompany.com:80/status"),
        ("https://mycompany.com/status", "http://mycompany.com/status"),
        ("https://mycompany.com/status", "https://mycompany.com/status/"),
        (TW_URL, "https://mycompany.com/myapp.php?bar=2&foo=1"),
    ],
)
def test_twilio_rejects_any_other_url(signed_url: str, received_url: str) -> None:
    signature = twilio_sign(signed_url, TW_PARAMS, TW_TOKEN)

    with pytest.raises(WebhookRejected, match="no signature matched"):
        twilio.verify_webhook(received_url, TW_PARAMS, signature, TW_TOKEN)


def test_twilio_parameter_order_does_not_matter() -> None:
    twilio.verify_webhook(TW_URL, list(reversed(TW_PARAMS)), TW_SIGNATURE, TW_TOKEN)


def test_twilio_repeated_parameters_sort_by_value() -> None:
    params = [("To", "+2"), ("Body", "b"), ("To", "+1")]
    text = "https://example.com/cb" + "Bodyb" + "To+1" + "To+2"
    signature = base64.b64encode(hmac.new(b"token", text.encode(), hashlib.sha1).digest()).decode()

    twilio.verify_webhook("https://example.com/cb", params, signature, "token")


@pytest.mark.parametrize(
    "params",
    [
        [*TW_PARAMS[:-1], ("To", "+18005551213")],
        TW_PARAMS[:-1],
        [*TW_PARAMS, ("Extra", "1")],
        [(name.lower(), value) for name, value in TW_PARAMS],
    ],
)
def test_twilio_rejects_tampered_parameters(params: list[tuple[str, str]]) -> None:
    with pytest.raises(WebhookRejected, match="no signature matched"):
        twilio.verify_webhook(TW_URL, params, TW_SIGNATURE, TW_TOKEN)


def test_twilio_rejects_the_wrong_token() -> None:
    with pytest.raises(WebhookRejected, match="no signature matched"):
        twilio.verify_webhook(TW_URL, TW_PARAMS, TW_SIGNATURE, secrets.token_hex(16))


@pytest.mark.parametrize("signature", [None, "", "  "])
def test_twilio_rejects_a_missing_signature(signature: str | None) -> None:
    with pytest.raises(WebhookRejected, match="missing header X-Twilio-Signature"):
        twilio.verify_webhook(TW_URL, TW_PARAMS, signature, TW_TOKEN)


@pytest.mark.parametrize("signature", ["garbage", "é" * 28, TW_SIGNATURE.lower()])
def test_twilio_rejects_unreadable_signatures(signature: str) -> None:
    with pytest.raises(WebhookRejected, match="no signature matched"):
        twilio.verify_webhook(TW_URL, TW_PARAMS, signature, TW_TOKEN)


@pytest.mark.parametrize("url", ["not a url", "https://host:notaport/x", "//host/x", ""])
def test_twilio_odd_urls_are_only_compared_as_given(url: str) -> None:
    signature = base64.b64encode(hmac.new(b"t", url.encode(), hashlib.sha1).digest()).decode()

    twilio.verify_webhook(url, [], signature, "t")
    with pytest.raises(WebhookRejected):
        twilio.verify_webhook(url + "x", [], signature, "t")


def test_twilio_generated_token_verifies() -> None:
    token = secrets.token_hex(16)
    params = [("MessageSid", "SM1"), ("MessageStatus", "delivered"), ("To", "+15005550006")]
    url = "https://lqs.example.com/webhooks/twilio/5b7c"

    twilio.verify_webhook(url, params, twilio_sign(url, params, token), token)


def test_twilio_empty_token_is_a_configuration_error() -> None:
    with pytest.raises(ProviderConfigError, match=r"twilio\.auth_token"):
        twilio.verify_webhook(TW_URL, TW_PARAMS, TW_SIGNATURE, "")


def status_callback(status: str, **extra: str) -> dict[str, str]:
    return {
        "AccountSid": "AC0000",
        "ApiVersion": "2010-04-01",
        "From": "+15005550006",
        "To": "+14155552671",
        "MessageSid": "SM5ef8732a3c49700934481addd5ce1659",
        "MessageStatus": status,
        **extra,
    }


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("queued", EventKind.ACCEPTED),
        ("accepted", EventKind.ACCEPTED),
        ("sending", EventKind.ACCEPTED),
        ("sent", EventKind.ACCEPTED),
        ("delivered", EventKind.DELIVERED),
        ("undelivered", EventKind.FAILED),
        ("failed", EventKind.FAILED),
        ("read", EventKind.ENGAGED),
        ("canceled", EventKind.OTHER),
        ("receiving", EventKind.OTHER),
        ("something_new", EventKind.OTHER),
    ],
)
def test_twilio_statuses_map_to_kinds(status: str, expected: EventKind) -> None:
    [event] = twilio.parse_webhook(status_callback(status))

    assert event.kind is expected
    assert event.raw_type == status


def test_twilio_event_fields() -> None:
    params = status_callback("delivered")

    [event] = twilio.parse_webhook(params)

    assert event.provider == "twilio"
    assert event.event_id == "SM5ef8732a3c49700934481addd5ce1659:delivered"
    assert event.external_id == "SM5ef8732a3c49700934481addd5ce1659"
    assert event.recipient == "+14155552671"
    assert event.occurred_at is None
    assert event.communication_id is None
    assert event.reason is None
    assert event.error_code is None
    assert event.payload == params


@pytest.mark.parametrize("status", ["undelivered", "failed"])
def test_twilio_failure_carries_the_error_code(status: str) -> None:
    [event] = twilio.parse_webhook(status_callback(status, ErrorCode="30003"))

    assert event.error_code == "30003"
    assert event.reason == f"{status} (ErrorCode 30003)"


def test_twilio_failure_without_error_code() -> None:
    [event] = twilio.parse_webhook(status_callback("failed"))

    assert event.error_code is None
    assert event.reason == "failed"


def test_twilio_each_status_is_its_own_event() -> None:
    [sent] = twilio.parse_webhook(status_callback("sent"))
    [delivered] = twilio.parse_webhook(status_callback("delivered"))

    assert sent.event_id != delivered.event_id
    assert sent.external_id == delivered.external_id


@pytest.mark.parametrize("missing", ["MessageSid", "MessageStatus"])
def test_twilio_callback_without_sid_or_status_is_malformed(missing: str) -> None:
    params = {k: v for k, v in status_callback("sent").items() if k != missing}

    with pytest.raises(WebhookMalformed, match=f"{missing} is missing"):
        twilio.parse_webhook(params)
    with pytest.raises(WebhookMalformed, match=f"{missing} is missing"):
        twilio.parse_webhook({**params, missing: ""})
