"""The official SDKs, pointed at the simulator by base URL only, work unchanged.

- resend-python reads ``resend.api_url`` (default from ``RESEND_API_URL``) at each request.
- sendgrid-python takes ``SendGridAPIClient(api_key, host=base_url)``.
- twilio-python builds URLs from ``client.api.base_url`` (``https://api.twilio.com``).
"""

from __future__ import annotations

import pytest
import resend
import resend.exceptions
from python_http_client.exceptions import BadRequestsError, UnauthorizedError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import CustomArg, Mail
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client as TwilioClient

from lqs.simulator import SimulatorControl
from tests.simulator.conftest import (
    RESEND_KEY,
    SENDGRID_KEY,
    TWILIO_SID,
    TWILIO_TOKEN,
    Configure,
)


@pytest.fixture
def resend_sdk(sim: SimulatorControl, simulator_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """resend-python pointed at the simulator (undone after the test by monkeypatch)."""
    monkeypatch.setattr(resend, "api_key", RESEND_KEY)
    monkeypatch.setattr(resend, "api_url", simulator_url)


@pytest.fixture
def twilio(sim: SimulatorControl, simulator_url: str) -> TwilioClient:
    client = TwilioClient(TWILIO_SID, TWILIO_TOKEN)
    client.api.base_url = simulator_url
    return client


@pytest.mark.usefixtures("resend_sdk")
def test_resend_sdk_sends_with_an_idempotency_key(sim: SimulatorControl) -> None:
    params: resend.Emails.SendParams = {
        "from": "Acme <hello@acme.example>",
        "to": ["lead@example.com"],
        "subject": "Welcome",
        "html": "<p>Hi</p>",
        "tags": [{"name": "communication_id", "value": "c-9"}],
    }

    sent = resend.Emails.send(params, {"idempotency_key": "welcome/9"})
    again = resend.Emails.send(params, {"idempotency_key": "welcome/9"})

    assert again["id"] == sent["id"]
    [message] = sim.messages("resend")
    assert message.provider_message_id == sent["id"]
    assert message.idempotency_key == "welcome/9"
    assert message.tags == {"communication_id": "c-9"}
    assert sent["http_headers"]["ratelimit-limit"] == "5"


@pytest.mark.usefixtures("resend_sdk")
def test_resend_sdk_sends_a_permissive_batch(sim: SimulatorControl) -> None:
    good: resend.Emails.SendParams = {
        "from": "hello@acme.example",
        "to": "a@example.com",
        "subject": "Hi",
        "text": "Hi",
    }
    bad: resend.Emails.SendParams = {**good, "to": "nobody"}

    answer = resend.Batch.send([good, bad], {"batch_validation": "permissive"})

    assert len(answer["data"]) == 1
    assert answer["errors"][0]["index"] == 1
    assert len(sim.messages("resend")) == 1


@pytest.mark.usefixtures("resend_sdk")
def test_resend_sdk_raises_on_refusals(
    configure: Configure, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(resend={"invalid_recipients": ["bounce@example.com"]})
    params: resend.Emails.SendParams = {
        "from": "hello@acme.example",
        "to": "bounce@example.com",
        "subject": "Hi",
        "text": "Hi",
    }

    with pytest.raises(resend.exceptions.ValidationError) as refused:
        resend.Emails.send(params)
    monkeypatch.setattr(resend, "api_key", "not-a-resend-key")
    with pytest.raises(resend.exceptions.InvalidApiKeyError):
        resend.Emails.send({**params, "to": "lead@example.com"})

    assert refused.value.code == 422
    assert "bounce@example.com" in refused.value.message


def test_sendgrid_sdk_sends_and_gets_the_message_id(
    sim: SimulatorControl, simulator_url: str
) -> None:
    mail = Mail(
        from_email="hello@acme.example",
        to_emails="lead@example.com",
        subject="Welcome",
        plain_text_content="Hi",
        html_content="<p>Hi</p>",
    )
    mail.custom_arg = CustomArg("communication_id", "c-3")

    response = SendGridAPIClient(SENDGRID_KEY, host=simulator_url).send(mail)

    assert response.status_code == 202
    [message] = sim.messages("sendgrid")
    assert response.headers["X-Message-Id"] == message.provider_message_id
    assert message.custom_args == {"communication_id": "c-3"}
    assert (message.text, message.html) == ("Hi", "<p>Hi</p>")


def test_sendgrid_sdk_raises_on_refusals(
    sim: SimulatorControl, simulator_url: str, configure: Configure
) -> None:
    configure(sendgrid={"invalid_recipients": ["bounce@example.com"]})
    mail = Mail("hello@acme.example", "bounce@example.com", "Hi", "Hi")

    with pytest.raises(BadRequestsError) as refused:
        SendGridAPIClient(SENDGRID_KEY, host=simulator_url).send(mail)
    with pytest.raises(UnauthorizedError):
        SendGridAPIClient("not-a-sendgrid-key", host=simulator_url).send(mail)

    assert refused.value.status_code == 400
    assert refused.value.to_dict["errors"][0]["field"] == "personalizations.0.to.0.email"
    assert sim.messages() == []


def test_twilio_sdk_creates_a_message(sim: SimulatorControl, twilio: TwilioClient) -> None:
    message = twilio.messages.create(
        to="+14155550100",
        from_="+14155550199",
        body="Your quote is ready",
        status_callback="https://lqs.example/twilio/status",
    )

    assert message.status == "queued"
    assert message.num_segments == "1"
    [recorded] = sim.messages("twilio")
    assert message.sid == recorded.provider_message_id
    assert recorded.details["status_callback"] == "https://lqs.example/twilio/status"


def test_twilio_sdk_raises_with_the_error_code(
    twilio: TwilioClient, simulator_url: str, configure: Configure
) -> None:
    configure(twilio={"accounts": {TWILIO_SID: TWILIO_TOKEN}})
    stranger = TwilioClient(TWILIO_SID, "wrong_fake_token")
    stranger.api.base_url = simulator_url

    with pytest.raises(TwilioRestException) as refused:
        twilio.messages.create(to="555-0100", from_="+14155550199", body="Hi")
    with pytest.raises(TwilioRestException) as unauthenticated:
        stranger.messages.create(to="+14155550100", from_="+14155550199", body="Hi")

    assert (refused.value.status, refused.value.code) == (400, 21211)
    assert "'To' number 555-0100" in refused.value.msg
    assert (unauthenticated.value.status, unauthenticated.value.code) == (401, 20003)
