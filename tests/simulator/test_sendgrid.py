"""SendGrid's ``POST /v3/mail/send``: 202 with ``X-Message-Id``, and every refusal."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from lqs.simulator import SimulatorControl
from tests.simulator.conftest import SENDGRID_KEY, Configure

AUTH = {"Authorization": f"Bearer {SENDGRID_KEY}"}
HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"
MESSAGE_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")
FROM_REQUIRED = (
    "The from object must be provided for every email send. It is an object that requires "
    'the email parameter, but may also contain a name parameter.  e.g. {"email" : '
    '"example@example.com"}  or {"email" : "example@example.com", "name" : "Example '
    'Recipient"}.'
)


def mail(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "personalizations": [
            {"to": [{"email": "lead@example.com", "name": "Lead"}], "custom_args": {"lead": "7"}}
        ],
        "from": {"email": "hello@acme.example", "name": "Acme"},
        "subject": "Welcome",
        "content": [
            {"type": "text/plain", "value": "Hi"},
            {"type": "text/html", "value": "<p>Hi</p>"},
        ],
        "custom_args": {"communication_id": "c-1", "lead": "0"},
        "headers": {"List-Unsubscribe": "<https://acme.example/u>"},
        "categories": ["welcome"],
    }
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not None}


def errors(*items: tuple[str, str | None, str | None]) -> dict[str, Any]:
    return {
        "errors": [
            {"message": message, "field": field, "help": f"{HELP}#{anchor}" if anchor else None}
            for message, field, anchor in items
        ]
    }


def test_accepted_mail_is_202_with_an_empty_body_and_a_message_id(
    client: httpx.Client, sim: SimulatorControl
) -> None:
    response = client.post("/v3/mail/send", json=mail(), headers=AUTH)

    assert response.status_code == 202
    assert response.content == b""
    message_id = response.headers["X-Message-Id"]
    assert MESSAGE_ID.match(message_id)
    [message] = sim.messages("sendgrid")
    assert message.provider_message_id == message_id
    assert message.sender == "hello@acme.example"
    assert message.recipients == ["lead@example.com"]
    assert (message.subject, message.text, message.html) == ("Welcome", "Hi", "<p>Hi</p>")
    assert message.custom_args == {"communication_id": "c-1", "lead": "7"}
    assert message.headers == {"List-Unsubscribe": "<https://acme.example/u>"}
    assert message.details["categories"] == ["welcome"]


def test_each_personalization_is_one_message_with_its_own_subject(
    client: httpx.Client, sim: SimulatorControl
) -> None:
    payload = mail(
        subject=None,
        personalizations=[
            {"to": [{"email": "a@example.com"}], "subject": "For A"},
            {"to": [{"email": "b@example.com"}], "subject": "For B"},
        ],
    )

    response = client.post("/v3/mail/send", json=payload, headers=AUTH)

    assert response.status_code == 202
    messages = sim.messages("sendgrid")
    assert [(m.recipients, m.subject) for m in messages] == [
        (["a@example.com"], "For A"),
        (["b@example.com"], "For B"),
    ]
    assert {m.provider_message_id for m in messages} == {response.headers["X-Message-Id"]}


def test_template_needs_neither_subject_nor_content(client: httpx.Client) -> None:
    payload = mail(subject=None, content=None, template_id="d-0123456789abcdef")

    assert client.post("/v3/mail/send", json=payload, headers=AUTH).status_code == 202


def test_missing_authorization_is_401(client: httpx.Client) -> None:
    response = client.post("/v3/mail/send", json=mail())

    assert response.status_code == 401
    assert response.json() == errors(("authorization required", None, None))


@pytest.mark.parametrize("authorization", ["Bearer re_test", "Basic SG.x", "Bearer"])
def test_key_that_is_not_a_sendgrid_key_is_401(client: httpx.Client, authorization: str) -> None:
    response = client.post("/v3/mail/send", json=mail(), headers={"Authorization": authorization})

    assert response.status_code == 401
    assert response.json() == errors(
        ("The provided authorization grant is invalid, expired, or revoked", None, None)
    )


def test_configured_keys_are_the_only_ones_accepted(
    client: httpx.Client, configure: Configure
) -> None:
    configure(sendgrid={"api_keys": [SENDGRID_KEY], "forbidden_keys": ["SG.fake-read-only"]})

    unknown = client.post("/v3/mail/send", json=mail(), headers={"Authorization": "Bearer SG.x"})
    restricted = client.post(
        "/v3/mail/send", json=mail(), headers={"Authorization": "Bearer SG.fake-read-only"}
    )
    known = client.post("/v3/mail/send", json=mail(), headers=AUTH)

    assert unknown.status_code == 401
    assert restricted.status_code == 403
    assert restricted.json() == errors(("access forbidden", None, None))
    assert known.status_code == 202


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"personalizations": []},
            (
                "The personalizations field is required and must have at least one "
                "personalization.",
                "personalizations",
                "-Personalizations-Errors",
            ),
        ),
        (
            {"personalizations": [{"subject": "x"}]},
            (
                "The to array is required for all personalization objects, and must have at "
                "least one email object with a valid email address.",
                "personalizations.0.to",
                "message.personalizations.to",
            ),
        ),
        (
            {"personalizations": [{"to": [{"email": "lead@example"}]}]},
            (
                "Does not contain a valid address.",
                "personalizations.0.to.0.email",
                "message.personalizations.to",
            ),
        ),
        ({"from": None}, (FROM_REQUIRED, "from.email", "message.from")),
        (
            {"from": {"email": "acme"}},
            ("The from email does not contain a valid address.", "from.email", "message.from"),
        ),
        (
            {"subject": None},
            (
                "The subject is required. You can get around this requirement if you use a "
                "template with a subject defined or if every personalization has a subject "
                "defined.",
                "subject",
                "message.subject",
            ),
        ),
        (
            {"content": []},
            (
                "Unless a valid template_id is provided, the content parameter is required. "
                "There must be at least one defined content block. We typically suggest both "
                "text/plain and text/html blocks are included, but only one block is required.",
                "content",
                "message.content",
            ),
        ),
        (
            {"content": [{"type": "text/plain", "value": ""}]},
            (
                "The content value must be a string at least one character in length.",
                "content.0.value",
                "message.content.value",
            ),
        ),
        (
            {
                "content": [
                    {"type": "text/html", "value": "<p>x</p>"},
                    {"type": "text/plain", "value": "x"},
                ]
            },
            (
                "If present, text/plain must be first, followed by text/html, followed by any "
                "other content.",
                "content",
                "message.content",
            ),
        ),
        (
            {"custom_args": {"lead": 7}},
            ("Invalid type. Expected: string, given: integer.", "custom_args.lead", None),
        ),
    ],
)
def test_invalid_mail_is_400_naming_the_field(
    client: httpx.Client,
    sim: SimulatorControl,
    overrides: dict[str, Any],
    expected: tuple[str, str, str | None],
) -> None:
    payload = mail(**{k: v for k, v in overrides.items() if v is not None})
    for key in [k for k, v in overrides.items() if v is None]:
        del payload[key]

    response = client.post("/v3/mail/send", json=payload, headers=AUTH)

    assert response.status_code == 400
    assert response.json() == errors(expected)
    assert sim.messages() == []


def test_every_error_is_reported_at_once(client: httpx.Client) -> None:
    payload = {"personalizations": [{"to": [{"email": "x@example.com"}]}]}

    response = client.post("/v3/mail/send", json=payload, headers=AUTH)

    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["from.email", "subject", "content"]


def test_body_that_is_not_json_is_400(client: httpx.Client) -> None:
    response = client.post("/v3/mail/send", content=b"<xml/>", headers=AUTH)

    assert response.status_code == 400
    assert response.json() == errors(("Bad Request", None, None))


def test_unverified_sender_is_403(client: httpx.Client, configure: Configure) -> None:
    configure(sendgrid={"verified_senders": ["acme.example"]})

    refused = client.post(
        "/v3/mail/send", json=mail(**{"from": {"email": "x@other.example"}}), headers=AUTH
    )
    accepted = client.post("/v3/mail/send", json=mail(), headers=AUTH)

    assert refused.status_code == 403
    [item] = refused.json()["errors"]
    assert item["field"] == "from"
    assert item["message"].startswith("The from address does not match a verified Sender Identity.")
    assert accepted.status_code == 202


def test_configured_invalid_recipient_is_400_at_its_field(
    client: httpx.Client, sim: SimulatorControl, configure: Configure
) -> None:
    configure(sendgrid={"invalid_recipients": ["bounce@example.com"]})
    payload = mail(
        personalizations=[
            {"to": [{"email": "ok@example.com"}]},
            {"to": [{"email": "ok2@example.com"}], "bcc": [{"email": "bounce@example.com"}]},
        ]
    )

    response = client.post("/v3/mail/send", json=payload, headers=AUTH)

    assert response.status_code == 400
    assert response.json() == errors(
        (
            "Does not contain a valid address.",
            "personalizations.1.bcc.0.email",
            "message.personalizations.bcc",
        )
    )
    assert sim.messages() == []


def test_a_retry_is_a_second_send(client: httpx.Client, sim: SimulatorControl) -> None:
    first = client.post("/v3/mail/send", json=mail(), headers=AUTH)
    second = client.post("/v3/mail/send", json=mail(), headers=AUTH)

    assert first.headers["X-Message-Id"] != second.headers["X-Message-Id"]
    assert len(sim.messages("sendgrid")) == 2
