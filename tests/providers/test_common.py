"""What every provider adapter shares: answers that never arrive, what is refused before
any request, the webhook errors' reasons; and the registry that names the providers.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from lqs.domain.delivery import Verdict
from lqs.domain.events import DeliveryEvent, EventKind
from lqs.providers.base import (
    ProviderConfigError,
    WebhookMalformed,
    WebhookRejected,
    lenient_event,
    unpadded_base64,
)
from lqs.providers.resend import ResendProvider
from lqs.providers.sendgrid import SendGridProvider
from lqs.simulator import SimulatorControl
from tests.providers.simulated import (
    HANG,
    PROVIDERS,
    configure,
    email,
    resend_settings,
    send_with,
    sendgrid_settings,
)

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


# Shared ----------------------------------------------------------------------------------


def test_rejections_and_malformations_carry_a_reason() -> None:
    rejected = WebhookRejected("no signature matched")
    malformed = WebhookMalformed("the body is not JSON")

    assert rejected.reason == str(rejected) == "no signature matched"
    assert malformed.reason == str(malformed) == "the body is not JSON"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("AAEC", b"\x00\x01\x02"), ("AAE", b"\x00\x01"), ("AA==", b"\x00"), ("AA", b"\x00")],
)
def test_base64_decodes_with_or_without_its_padding(text: str, expected: bytes) -> None:
    assert unpadded_base64(text) == expected


@pytest.mark.parametrize("text", ["AA_B", "AA B", "whsec_AAAA", "A"])
def test_text_that_is_not_base64_decodes_to_nothing(text: str) -> None:
    assert unpadded_base64(text) == b""


def _malformed() -> DeliveryEvent:
    raise WebhookMalformed("data is missing or not an object")


def test_an_unknown_event_that_does_not_parse_is_kept_as_other() -> None:
    payload = {"type": "email.something_new", "data": 3}

    event = lenient_event(
        _malformed,
        provider="resend",
        event_id="msg_1",
        raw_type="email.something_new",
        payload=payload,
        known={"email.sent"},
    )

    assert event == DeliveryEvent(
        "resend", "msg_1", EventKind.OTHER, "email.something_new", None, payload=payload
    )


def test_a_known_event_that_does_not_parse_is_malformed() -> None:
    with pytest.raises(WebhookMalformed, match="data is missing"):
        lenient_event(
            _malformed,
            provider="resend",
            event_id="msg_1",
            raw_type="email.sent",
            payload={},
            known={"email.sent"},
        )


def test_an_event_that_parses_is_returned_as_parsed() -> None:
    parsed = DeliveryEvent("sendgrid", "sg_1", EventKind.DELIVERED, "delivered", "m1")

    event = lenient_event(
        lambda: parsed,
        provider="sendgrid",
        event_id="sg_1",
        raw_type="delivered",
        payload={},
        known=set(),
    )

    assert event is parsed
