"""The provider simulator as the adapter tests use it: settings pointing at it, ordinary
messages, and reading what it received (the fixtures are in ``conftest.py``)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx

from lqs.domain.delivery import ResendSettings, SendGridSettings, TwilioSettings
from lqs.providers.base import OutboundMessage, SendResult
from lqs.providers.resend import ResendProvider
from lqs.providers.sendgrid import SendGridProvider
from lqs.providers.twilio import TwilioProvider
from lqs.simulator import SimulatorConfig, SimulatorControl
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


def configure(sim: SimulatorControl, **sections: Any) -> None:
    """Replace the simulator's configuration: ``configure(sim, resend={...})``."""
    sim.configure(SimulatorConfig.model_validate(sections))


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
