"""Twilio's ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``: 201 and error codes."""

from __future__ import annotations

import email.utils
import re

import httpx
import pytest

from lqs.simulator import SimulatorControl
from lqs.simulator.twilio import segment_count
from tests.simulator.conftest import TWILIO_SID, TWILIO_TOKEN, Configure

PATH = f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
AUTH = (TWILIO_SID, TWILIO_TOKEN)
SERVICE_SID = "MG" + "f" * 32


def sms(**overrides: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "To": "+14155550100",
        "From": "+14155550199",
        "Body": "Your quote is ready",
    }
    params.update(overrides)
    return {name: value for name, value in params.items() if value is not None}


def twilio_error(status: int, code: int, message: str) -> dict[str, object]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def test_accepted_message_is_201_with_the_message_resource(
    client: httpx.Client, sim: SimulatorControl
) -> None:
    response = client.post(
        PATH, data=sms(StatusCallback="https://lqs.example/twilio/status"), auth=AUTH
    )

    assert response.status_code == 201
    resource = response.json()
    assert re.fullmatch(r"SM[0-9a-f]{32}", resource["sid"])
    assert resource["status"] == "queued"
    assert (resource["to"], resource["from"], resource["body"]) == (
        "+14155550100",
        "+14155550199",
        "Your quote is ready",
    )
    assert resource["account_sid"] == TWILIO_SID
    assert resource["num_segments"] == "1"
    assert resource["error_code"] is None
    assert resource["error_message"] is None
    assert resource["direction"] == "outbound-api"
    assert resource["api_version"] == "2010-04-01"
    assert resource["uri"] == f"/2010-04-01/Accounts/{TWILIO_SID}/Messages/{resource['sid']}.json"
    assert email.utils.parsedate_to_datetime(resource["date_created"]).tzinfo is not None
    [message] = sim.messages("twilio")
    assert message.provider_message_id == resource["sid"]
    assert message.recipients == ["+14155550100"]
    assert message.body == "Your quote is ready"
    assert message.details["status_callback"] == "https://lqs.example/twilio/status"


def test_messaging_service_without_from_is_accepted(client: httpx.Client) -> None:
    response = client.post(PATH, data=sms(From=None, MessagingServiceSid=SERVICE_SID), auth=AUTH)

    assert response.status_code == 201
    assert response.json()["status"] == "accepted"
    assert response.json()["from"] is None
    assert response.json()["messaging_service_sid"] == SERVICE_SID


@pytest.mark.parametrize(
    "auth",
    [None, (TWILIO_SID, ""), ("AC123", TWILIO_TOKEN), ("AC" + "1" * 32, TWILIO_TOKEN)],
)
def test_missing_or_wrong_credentials_are_401_20003(
    client: httpx.Client, auth: tuple[str, str] | None
) -> None:
    response = client.post(PATH, data=sms(), auth=auth)

    assert response.status_code == 401
    assert response.json() == twilio_error(401, 20003, "Authenticate")
    assert response.headers["WWW-Authenticate"] == 'Basic realm="Twilio API"'


def test_configured_accounts_need_their_own_token(
    client: httpx.Client, configure: Configure
) -> None:
    configure(twilio={"accounts": {TWILIO_SID: TWILIO_TOKEN}})

    wrong = client.post(PATH, data=sms(), auth=(TWILIO_SID, "other_fake_token"))
    right = client.post(PATH, data=sms(), auth=AUTH)

    assert wrong.status_code == 401
    assert right.status_code == 201


@pytest.mark.parametrize(
    ("params", "code", "message"),
    [
        (sms(To=None), 21604, "A 'To' phone number is required."),
        (sms(From=None), 21603, "A 'From' phone number is required."),
        (sms(Body=None), 21602, "Message body is required."),
        (
            sms(Body="x" * 1601),
            21617,
            "The concatenated message body exceeds the 1600 character limit.",
        ),
        (sms(To="4155550100"), 21211, "The 'To' number 4155550100 is not a valid phone number."),
        (sms(To="+0123"), 21211, "The 'To' number +0123 is not a valid phone number."),
        (
            sms(From="+1-415"),
            21212,
            "The 'From' number +1-415 is not a valid phone number, shortcode, or alphanumeric sender ID.",
        ),
        (sms(From="+14155550100"), 21266, "'To' and 'From' number cannot be the same"),
        (
            sms(From=None, MessagingServiceSid="MG123"),
            21701,
            "The Messaging Service Sid MG123 is invalid.",
        ),
        (
            sms(StatusCallback="ftp://x"),
            21609,
            "The StatusCallback URL ftp://x is not a valid URL.",
        ),
    ],
)
def test_invalid_message_is_400_with_twilio_error_code(
    client: httpx.Client,
    sim: SimulatorControl,
    params: dict[str, str],
    code: int,
    message: str,
) -> None:
    response = client.post(PATH, data=params, auth=AUTH)

    assert response.status_code == 400
    assert response.json() == twilio_error(400, code, message)
    assert sim.messages() == []


def test_body_of_1600_characters_is_accepted(client: httpx.Client) -> None:
    response = client.post(PATH, data=sms(Body="x" * 1600), auth=AUTH)

    assert response.status_code == 201
    assert response.json()["num_segments"] == "11"


@pytest.mark.parametrize("sender", ["12345", "ACME Co", "+447700900123"])
def test_short_codes_and_alphanumeric_senders_are_valid(client: httpx.Client, sender: str) -> None:
    assert client.post(PATH, data=sms(From=sender), auth=AUTH).status_code == 201


def test_configured_invalid_numbers_get_21211_and_21212(
    client: httpx.Client, configure: Configure
) -> None:
    configure(twilio={"invalid_recipients": ["+14155550100"], "invalid_senders": ["+14155550199"]})

    to = client.post(PATH, data=sms(), auth=AUTH)
    sender = client.post(PATH, data=sms(To="+14155550111"), auth=AUTH)

    assert to.json()["code"] == 21211
    assert sender.json()["code"] == 21212


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),
        ("€" * 81, 2),
        ("é" * 160, 1),
        ("ł" * 70, 1),
        ("ł" * 71, 2),
        ("😀" * 35, 1),
        ("😀" * 36, 2),
    ],
)
def test_segments_follow_gsm7_and_ucs2_sizes(body: str, segments: int) -> None:
    assert segment_count(body) == segments
