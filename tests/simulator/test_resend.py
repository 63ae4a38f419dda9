"""Resend's ``POST /emails`` and ``POST /emails/batch``: successes and every refusal."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from lqs.simulator import SimulatorControl
from tests.simulator.conftest import RESEND_KEY, Configure

AUTH = {"Authorization": f"Bearer {RESEND_KEY}"}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
ADDRESS_FORMAT = (
    "The email address needs to follow the `email@example.com` or "
    "`Name <email@example.com>` format."
)


def email(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "from": "Acme <hello@acme.example>",
        "to": ["lead@example.com"],
        "subject": "Welcome",
        "html": "<p>Hi</p>",
        "text": "Hi",
    }
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not None}


def error(status: int, name: str, message: str) -> dict[str, Any]:
    return {"statusCode": status, "message": message, "name": name}


def test_accepted_email_is_answered_with_an_id_and_recorded(
    client: httpx.Client, sim: SimulatorControl
) -> None:
    payload = email(
        to="Lead <Lead@Example.com>",
        cc=["cc@example.com"],
        headers={"List-Unsubscribe": "<https://acme.example/u>"},
        tags=[{"name": "communication_id", "value": "c-123"}],
    )

    response = client.post("/emails", json=payload, headers=AUTH)

    assert response.status_code == 200
    message_id = response.json()["id"]
    assert UUID.match(message_id)
    assert response.headers["content-type"] == "application/json"
    [message] = sim.messages("resend")
    assert message.provider_message_id == message_id
    assert message.sender == "hello@acme.example"
    assert message.recipients == ["Lead@Example.com"]
    assert (message.subject, message.html, message.text) == ("Welcome", "<p>Hi</p>", "Hi")
    assert message.headers == {"List-Unsubscribe": "<https://acme.example/u>"}
    assert message.tags == {"communication_id": "c-123"}
    assert message.details["cc"] == ["cc@example.com"]
    assert message.request.path == "/emails"
    assert message.request.headers["authorization"] == f"Bearer {RESEND_KEY}"
    assert message.request.body == response.request.content.decode()


def test_every_answer_carries_the_rate_limit_headers(client: httpx.Client) -> None:
    accepted = client.post("/emails", json=email(), headers=AUTH)
    refused = client.post("/emails", json=email(to=None), headers=AUTH)

    for response in (accepted, refused):
        assert response.headers["ratelimit-limit"] == "5"
        assert int(response.headers["ratelimit-remaining"]) in range(5)
        assert int(response.headers["ratelimit-reset"]) >= 1


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Basic cmVfeDp5"],
)
def test_missing_api_key_is_401(client: httpx.Client, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    response = client.post("/emails", json=email(), headers=headers)

    assert response.status_code == 401
    assert response.json() == error(
        401, "missing_api_key", "Missing API key in the authorization header."
    )


def test_key_without_re_prefix_is_403(client: httpx.Client, sim: SimulatorControl) -> None:
    response = client.post("/emails", json=email(), headers={"Authorization": "Bearer SG.x"})

    assert response.status_code == 403
    assert response.json() == error(403, "invalid_api_key", "API key is invalid")
    assert sim.messages() == []


def test_only_configured_keys_are_accepted_when_some_are(
    client: httpx.Client, configure: Configure
) -> None:
    configure(resend={"api_keys": [RESEND_KEY]})

    other = client.post("/emails", json=email(), headers={"Authorization": "Bearer re_other"})
    known = client.post("/emails", json=email(), headers=AUTH)

    assert other.status_code == 403
    assert other.json()["name"] == "invalid_api_key"
    assert known.status_code == 200


@pytest.mark.parametrize("field", ["from", "to", "subject"])
def test_missing_required_field_is_422(
    client: httpx.Client, sim: SimulatorControl, field: str
) -> None:
    payload = email()
    del payload[field]

    response = client.post("/emails", json=payload, headers=AUTH)

    assert response.status_code == 422
    assert response.json() == error(422, "missing_required_field", f"Missing `{field}` field.")
    assert sim.messages() == []


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"to": "not-an-address"}, "to"),
        ({"to": ["ok@example.com", "bad@"]}, "to"),
        ({"from": "Acme <nobody>"}, "from"),
        ({"cc": "two@@example.com"}, "cc"),
        ({"reply_to": ["a b@example.com"]}, "reply_to"),
    ],
)
def test_malformed_address_is_422_validation_error(
    client: httpx.Client, overrides: dict[str, Any], field: str
) -> None:
    response = client.post("/emails", json=email(**overrides), headers=AUTH)

    assert response.status_code == 422
    assert response.json() == error(
        422, "validation_error", f"Invalid `{field}` field. {ADDRESS_FORMAT}"
    )


def test_more_than_50_recipients_is_422(client: httpx.Client) -> None:
    to = [f"lead{i}@example.com" for i in range(51)]

    response = client.post("/emails", json=email(to=to), headers=AUTH)

    assert response.status_code == 422
    assert response.json() == error(
        422, "validation_error", "Too many recipients in the `to` field: the maximum is 50."
    )


def test_fifty_recipients_are_accepted(client: httpx.Client) -> None:
    to = [f"lead{i}@example.com" for i in range(50)]

    assert client.post("/emails", json=email(to=to), headers=AUTH).status_code == 200


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"to": 42}, "The `to` field must be a string or an array of strings."),
        ({"from": ["a@example.com"]}, "The `from` field must be a string."),
        ({"html": {"x": 1}}, "The `html` field must be a string."),
        ({"headers": {"X-Count": 3}}, "The `headers` field must be an object of strings."),
        ({"tags": {"name": "x"}}, "The `tags` field must be an array of {name, value} objects."),
    ],
)
def test_wrong_types_are_422_invalid_parameter(
    client: httpx.Client, overrides: dict[str, Any], message: str
) -> None:
    response = client.post("/emails", json=email(**overrides), headers=AUTH)

    assert response.status_code == 422
    assert response.json() == error(422, "invalid_parameter", message)


def test_tags_with_other_characters_are_refused(client: httpx.Client) -> None:
    response = client.post(
        "/emails", json=email(tags=[{"name": "lead id", "value": "1"}]), headers=AUTH
    )

    assert response.status_code == 422
    assert response.json()["name"] == "validation_error"
    assert "Tag names and values" in response.json()["message"]


def test_body_that_is_not_json_is_400(client: httpx.Client) -> None:
    response = client.post(
        "/emails", content=b"{not json", headers={**AUTH, "Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json() == error(400, "validation_error", "The request body is not valid JSON.")


def test_configured_invalid_recipient_is_refused_with_a_clear_message(
    client: httpx.Client, sim: SimulatorControl, configure: Configure
) -> None:
    configure(resend={"invalid_recipients": ["Bounce@Example.com"]})

    response = client.post("/emails", json=email(to=["bounce@example.com"]), headers=AUTH)

    assert response.status_code == 422
    assert response.json() == error(
        422,
        "validation_error",
        "Invalid `to` field. bounce@example.com is configured in the simulator as an "
        "invalid recipient.",
    )
    assert sim.messages() == []
    [logged] = sim.requests("resend")
    assert (logged.status, logged.outcome) == (422, "refused")


def test_sender_domain_must_be_verified_when_domains_are_configured(
    client: httpx.Client, configure: Configure
) -> None:
    configure(resend={"verified_domains": ["acme.example"]})

    refused = client.post("/emails", json=email(**{"from": "x@other.example"}), headers=AUTH)
    accepted = client.post("/emails", json=email(), headers=AUTH)

    assert refused.status_code == 403
    assert refused.json() == error(
        403,
        "validation_error",
        "The other.example domain is not verified. Please, add and verify your domain on "
        "https://resend.com/domains",
    )
    assert accepted.status_code == 200


def test_enforced_rate_limit_answers_429_with_retry_after(
    client: httpx.Client, configure: Configure
) -> None:
    configure(resend={"rate_limit_per_second": 1, "enforce_rate_limit": True})

    # Three requests well within one second: whichever second boundary they straddle,
    # at least one lands second in its window.
    responses = [client.post("/emails", json=email(), headers=AUTH) for _ in range(3)]

    limited = [r for r in responses if r.status_code == 429]
    assert limited
    assert limited[0].json()["name"] == "rate_limit_exceeded"
    assert limited[0].json()["statusCode"] == 429
    assert int(limited[0].headers["retry-after"]) >= 1
    assert limited[0].headers["ratelimit-remaining"] == "0"


# --- batch -------------------------------------------------------------------------------


def test_batch_is_answered_with_one_id_per_email(
    client: httpx.Client, sim: SimulatorControl
) -> None:
    batch = [email(to=f"lead{i}@example.com") for i in range(3)]

    response = client.post("/emails/batch", json=batch, headers=AUTH)

    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["data"]
    ids = [item["id"] for item in body["data"]]
    assert len(ids) == 3
    assert all(UUID.match(i) for i in ids)
    messages = sim.messages("resend")
    assert [m.provider_message_id for m in messages] == ids
    assert [m.details["batch_index"] for m in messages] == [0, 1, 2]


def test_strict_batch_with_one_invalid_email_sends_nothing(
    client: httpx.Client, sim: SimulatorControl
) -> None:
    batch = [email(), email(to=None), email()]

    response = client.post("/emails/batch", json=batch, headers=AUTH)

    assert response.status_code == 422
    assert response.json() == error(422, "missing_required_field", "Missing `to` field.")
    assert sim.messages() == []


def test_permissive_batch_sends_the_valid_emails_and_lists_the_others(
    client: httpx.Client, sim: SimulatorControl
) -> None:
    batch = [email(), email(to="bad"), email(), email(subject=None)]

    response = client.post(
        "/emails/batch", json=batch, headers={**AUTH, "x-batch-validation": "permissive"}
    )

    assert response.status_code == 200
    body = response.json()
    assert len(body["data"]) == 2
    assert body["errors"] == [
        {"index": 1, "message": f"Invalid `to` field. {ADDRESS_FORMAT}"},
        {"index": 3, "message": "Missing `subject` field."},
    ]
    assert [m.details["batch_index"] for m in sim.messages()] == [0, 2]


def test_permissive_batch_without_errors_has_an_empty_errors_list(client: httpx.Client) -> None:
    response = client.post(
        "/emails/batch", json=[email()], headers={**AUTH, "x-batch-validation": "permissive"}
    )

    assert response.json()["errors"] == []


@pytest.mark.parametrize(
    ("batch", "headers", "expected"),
    [
        (
            [email()] * 101,
            {},
            error(422, "validation_error", "The batch must not contain more than 100 emails."),
        ),
        ([], {}, error(422, "validation_error", "The batch must contain at least one email.")),
        (email(), {}, error(422, "validation_error", "The request body must be an array.")),
        (
            [email(attachments=[{"filename": "a.txt", "content": "eA=="}])],
            {},
            error(
                422,
                "validation_error",
                "The `attachments` field is not supported for batch emails.",
            ),
        ),
        (
            [email()],
            {"x-batch-validation": "lenient"},
            error(
                422,
                "invalid_parameter",
                "The `x-batch-validation` header must be `strict` or `permissive`.",
            ),
        ),
    ],
)
def test_malformed_batches_are_refused(
    client: httpx.Client,
    sim: SimulatorControl,
    batch: Any,
    headers: dict[str, str],
    expected: dict[str, Any],
) -> None:
    response = client.post("/emails/batch", json=batch, headers={**AUTH, **headers})

    assert response.status_code == expected["statusCode"]
    assert response.json() == expected
    assert sim.messages() == []


def test_hundred_emails_make_a_valid_batch(client: httpx.Client) -> None:
    response = client.post("/emails/batch", json=[email()] * 100, headers=AUTH)

    assert response.status_code == 200
    assert len(response.json()["data"]) == 100
