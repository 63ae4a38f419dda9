"""SendGrid: the adapter against the provider simulator, and its Event Webhook (ECDSA
signatures, events).

The ✓ vectors come from the shared reference wire-formats.md (each provider's published
example); every other key and secret is generated here.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from lqs.domain.delivery import SendGridSettings, Verdict
from lqs.domain.events import EventKind
from lqs.providers import sendgrid
from lqs.providers.base import (
    OutboundMessage,
    ProviderConfigError,
    WebhookMalformed,
    WebhookRejected,
)
from lqs.providers.sendgrid import SendGridProvider
from lqs.simulator import SimulatorControl
from tests.providers.simulated import (
    RECIPIENT,
    SENDER,
    SENDGRID_KEY,
    configure,
    email,
    sendgrid_settings,
    the_request,
)

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


# SendGrid --------------------------------------------------------------------------------

SG_PUBLIC_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRq"
    "e62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
)
SG_TIMESTAMP = 1600112502
SG_SIGNATURE = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM="
SG_BODY = (
    b'[{"email":"hello@world.com","event":"dropped","reason":"Bounced Address",'
    b'"sg_event_id":"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",'
    b'"sg_message_id":"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",'
    b'"smtp-id":"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>","timestamp":1600112492}]'
    b"\r\n"
)
SG_SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
SG_TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


def sg_headers(signature: str = SG_SIGNATURE, timestamp: int = SG_TIMESTAMP) -> dict[str, str]:
    return {SG_SIGNATURE_HEADER: signature, SG_TIMESTAMP_HEADER: str(timestamp)}


class SendGridKey:
    """A generated Event Webhook key pair, signing as SendGrid does."""

    def __init__(self, curve: ec.EllipticCurve | None = None) -> None:
        self.private = ec.generate_private_key(curve or ec.SECP256R1())
        der = self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public = base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: int = SG_TIMESTAMP) -> dict[str, str]:
        signature = self.private.sign(str(timestamp).encode() + body, ec.ECDSA(hashes.SHA256()))
        return sg_headers(base64.b64encode(signature).decode(), timestamp)


@pytest.fixture(scope="module")
def sg_key() -> SendGridKey:
    return SendGridKey()


def test_sendgrid_vector_verifies() -> None:
    sendgrid.verify_webhook(SG_BODY, sg_headers(), SG_PUBLIC_KEY, now=SG_TIMESTAMP)


def test_sendgrid_vector_signs_the_trailing_crlf() -> None:
    with pytest.raises(WebhookRejected, match="no signature matched"):
        sendgrid.verify_webhook(SG_BODY.rstrip(), sg_headers(), SG_PUBLIC_KEY, now=SG_TIMESTAMP)


def test_sendgrid_key_may_be_wrapped_and_indented() -> None:
    wrapped = "\n  ".join(SG_PUBLIC_KEY[i : i + 20] for i in range(0, len(SG_PUBLIC_KEY), 20))

    sendgrid.verify_webhook(SG_BODY, sg_headers(), f" {wrapped}\n", now=SG_TIMESTAMP)


def test_sendgrid_generated_key_verifies(sg_key: SendGridKey) -> None:
    sendgrid.verify_webhook(SG_BODY, sg_key.headers(SG_BODY), sg_key.public, now=SG_TIMESTAMP)


@pytest.mark.parametrize("age", [0, 300, -300])
def test_sendgrid_accepts_timestamps_within_300_seconds(sg_key: SendGridKey, age: int) -> None:
    headers = sg_key.headers(SG_BODY)

    sendgrid.verify_webhook(SG_BODY, headers, sg_key.public, now=SG_TIMESTAMP + age)


@pytest.mark.parametrize("age", [301, -301])
def test_sendgrid_rejects_timestamps_too_old_or_in_the_future(
    sg_key: SendGridKey, age: int
) -> None:
    headers = sg_key.headers(SG_BODY)

    with pytest.raises(WebhookRejected, match="timestamp outside the 300 s tolerance"):
        sendgrid.verify_webhook(SG_BODY, headers, sg_key.public, now=SG_TIMESTAMP + age)


def test_sendgrid_checks_the_clock_by_default() -> None:
    with pytest.raises(WebhookRejected, match="timestamp outside"):
        sendgrid.verify_webhook(SG_BODY, sg_headers(), SG_PUBLIC_KEY)


def test_sendgrid_rejects_a_tampered_body() -> None:
    tampered = SG_BODY.replace(b"Bounced Address", b"Bounced Addresz")

    with pytest.raises(WebhookRejected, match="no signature matched"):
        sendgrid.verify_webhook(tampered, sg_headers(), SG_PUBLIC_KEY, now=SG_TIMESTAMP)


def test_sendgrid_rejects_a_reserialised_body() -> None:
    reserialised = json.dumps(json.loads(SG_BODY), indent=1).encode() + b"\r\n"

    with pytest.raises(WebhookRejected, match="no signature matched"):
        sendgrid.verify_webhook(reserialised, sg_headers(), SG_PUBLIC_KEY, now=SG_TIMESTAMP)


def test_sendgrid_signature_covers_the_timestamp(sg_key: SendGridKey) -> None:
    headers = {**sg_key.headers(SG_BODY), SG_TIMESTAMP_HEADER: str(SG_TIMESTAMP + 1)}

    with pytest.raises(WebhookRejected, match="no signature matched"):
        sendgrid.verify_webhook(SG_BODY, headers, sg_key.public, now=SG_TIMESTAMP)


def test_sendgrid_rejects_the_wrong_key(sg_key: SendGridKey) -> None:
    with pytest.raises(WebhookRejected, match="no signature matched"):
        sendgrid.verify_webhook(SG_BODY, sg_headers(), sg_key.public, now=SG_TIMESTAMP)


@pytest.mark.parametrize("missing", [SG_SIGNATURE_HEADER, SG_TIMESTAMP_HEADER])
def test_sendgrid_rejects_a_missing_header(missing: str) -> None:
    headers = {k: v for k, v in sg_headers().items() if k != missing}

    with pytest.raises(WebhookRejected, match=f"missing header {missing}"):
        sendgrid.verify_webhook(SG_BODY, headers, SG_PUBLIC_KEY, now=SG_TIMESTAMP)


def test_sendgrid_header_names_are_case_insensitive() -> None:
    headers = {k.lower(): v for k, v in sg_headers().items()}

    sendgrid.verify_webhook(SG_BODY, headers, SG_PUBLIC_KEY, now=SG_TIMESTAMP)
    sendgrid.verify_webhook(SG_BODY, httpx.Headers(sg_headers()), SG_PUBLIC_KEY, now=SG_TIMESTAMP)


@pytest.mark.parametrize(
    "signature",
    ["not base64!", "AAAA", base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode()],
)
def test_sendgrid_rejects_unreadable_signatures(signature: str) -> None:
    with pytest.raises(WebhookRejected, match="no signature matched"):
        sendgrid.verify_webhook(SG_BODY, sg_headers(signature), SG_PUBLIC_KEY, now=SG_TIMESTAMP)


def test_sendgrid_rejects_a_timestamp_that_is_not_unix_seconds() -> None:
    headers = {**sg_headers(), SG_TIMESTAMP_HEADER: "2020-09-14T19:41:42Z"}

    with pytest.raises(WebhookRejected, match="not a Unix timestamp"):
        sendgrid.verify_webhook(SG_BODY, headers, SG_PUBLIC_KEY, now=SG_TIMESTAMP)


@pytest.mark.parametrize(
    "public_key",
    [
        "",
        "not a key",
        base64.b64encode(b"0" * 91).decode(),
        SG_PUBLIC_KEY[:-8],
        SendGridKey(ec.SECP384R1()).public,
    ],
)
def test_sendgrid_unusable_public_key_is_a_configuration_error(public_key: str) -> None:
    with pytest.raises(ProviderConfigError, match=r"sendgrid\.webhook_public_key"):
        sendgrid.verify_webhook(SG_BODY, sg_headers(), public_key, now=SG_TIMESTAMP)


def test_sendgrid_vector_parses() -> None:
    [event] = sendgrid.parse_webhook(SG_BODY)

    assert event.provider == "sendgrid"
    assert event.event_id == "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA"
    assert event.kind is EventKind.DROPPED
    assert event.raw_type == "dropped"
    assert event.external_id == "LRzXl_NHStOGhQ4kofSm_A"
    assert event.occurred_at == datetime(2020, 9, 14, 19, 41, 32, tzinfo=UTC)
    assert event.recipient == "hello@world.com"
    assert event.reason == "Bounced Address"
    assert event.communication_id is None
    assert event.payload == json.loads(SG_BODY)[0]


def sg_event(kind: str, index: int = 0, **fields: Any) -> dict[str, Any]:
    return {
        "email": "someone@example.com",
        "timestamp": 1700000000,
        "event": kind,
        "sg_event_id": f"evt-{index}",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        **fields,
    }


def parse_sendgrid(*events: Any) -> list[Any]:
    return sendgrid.parse_webhook(json.dumps(list(events)).encode() + b"\r\n")


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("processed", EventKind.ACCEPTED),
        ("delivered", EventKind.DELIVERED),
        ("deferred", EventKind.DELAYED),
        ("bounce", EventKind.BOUNCED),
        ("dropped", EventKind.DROPPED),
        ("spamreport", EventKind.COMPLAINED),
        ("unsubscribe", EventKind.UNSUBSCRIBED),
        ("group_unsubscribe", EventKind.UNSUBSCRIBED),
        ("open", EventKind.ENGAGED),
        ("click", EventKind.ENGAGED),
        ("group_resubscribe", EventKind.OTHER),
        ("something_new", EventKind.OTHER),
    ],
)
def test_sendgrid_events_map_to_kinds(kind: str, expected: EventKind) -> None:
    [event] = parse_sendgrid(sg_event(kind))

    assert event.kind is expected
    assert event.raw_type == kind


def test_sendgrid_bounce_carries_reason_and_status() -> None:
    [event] = parse_sendgrid(
        sg_event("bounce", type="bounce", reason="550 5.1.1 no such user", status="5.1.1")
    )

    assert event.kind is EventKind.BOUNCED
    assert event.reason == "550 5.1.1 no such user"
    assert event.error_code == "5.1.1"


def test_sendgrid_blocked_bounce_is_soft() -> None:
    [event] = parse_sendgrid(sg_event("bounce", type="blocked", reason="blocked", status="4.0.0"))

    assert event.kind is EventKind.SOFT_BOUNCED
    assert event.reason == "blocked"
    assert event.error_code == "4.0.0"


def test_sendgrid_deferral_carries_the_servers_answer() -> None:
    [event] = parse_sendgrid(sg_event("deferred", response="400 try again later", attempt="5"))

    assert event.reason == "400 try again later"


def test_sendgrid_reads_our_communication_id() -> None:
    communication_id = uuid4()
    custom_arg = sendgrid.COMMUNICATION_ID_ARG

    [event] = parse_sendgrid(sg_event("delivered", **{custom_arg: str(communication_id)}))

    assert event.communication_id == communication_id


def test_sendgrid_custom_arg_is_the_one_the_send_uses() -> None:
    message = OutboundMessage(uuid4(), uuid4(), uuid4(), "email", "a@example.com", "s", "c")
    settings = SendGridSettings(api_key="SG.test", from_address="from@example.com")

    body = sendgrid.SendGridProvider(httpx.AsyncClient()).request_body(settings, message)

    assert body["custom_args"][sendgrid.COMMUNICATION_ID_ARG] == str(message.communication_id)


@pytest.mark.parametrize("value", ["not-a-uuid", 42, None, ""])
def test_sendgrid_ignores_a_communication_id_that_is_not_a_uuid(value: Any) -> None:
    [event] = parse_sendgrid(sg_event("delivered", **{sendgrid.COMMUNICATION_ID_ARG: value}))

    assert event.communication_id is None


@pytest.mark.parametrize(
    ("sg_message_id", "expected"),
    [("abc", "abc"), ("abc.filter.0", "abc"), (None, None), ("", None), (".x", None)],
)
def test_sendgrid_message_id_is_the_prefix(sg_message_id: str | None, expected: str | None) -> None:
    [event] = parse_sendgrid(sg_event("delivered", sg_message_id=sg_message_id))

    assert event.external_id == expected


def test_sendgrid_keeps_every_event_in_order() -> None:
    events = parse_sendgrid(sg_event("processed", 0), sg_event("delivered", 1), sg_event("open", 2))

    assert [e.event_id for e in events] == ["evt-0", "evt-1", "evt-2"]
    assert [e.kind for e in events] == [EventKind.ACCEPTED, EventKind.DELIVERED, EventKind.ENGAGED]


def test_sendgrid_empty_array_has_no_events() -> None:
    assert sendgrid.parse_webhook(b"[]\r\n") == []


@pytest.mark.parametrize("missing", ["sg_event_id", "event"])
def test_sendgrid_event_without_id_or_type_names_its_index(missing: str) -> None:
    broken = {k: v for k, v in sg_event("delivered", 2).items() if k != missing}

    with pytest.raises(WebhookMalformed, match=f"event 2 has no {missing}"):
        parse_sendgrid(sg_event("processed", 0), sg_event("delivered", 1), broken)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{}",
        b'{"event": "delivered", "sg_event_id": "x"}',
        b'"delivered"',
        b"[1]",
        b"[null]",
        b"[[]]",
        b'[{"event": "delivered", "sg_event_id": 7}]',
        b'[{"event": ["delivered"], "sg_event_id": "x"}]',
        b'[{"event": "delivered", "sg_event_id": "x", "timestamp": "1700000000"}]',
        b'[{"event": "delivered", "sg_event_id": "x", "timestamp": true}]',
        b'[{"event": "delivered", "sg_event_id": "x", "timestamp": 1e300}]',
        b'[{"event": "delivered", "sg_event_id": "x", "email": ["a@b.c"]}]',
        b'[{"event": "delivered", "sg_event_id": "x", "sg_message_id": {"id": "m"}}]',
        b'[{"event": "bounce", "sg_event_id": "x", "reason": {"text": "no"}}]',
        b"\xff\xfe[]",
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_sendgrid_malformed_bodies_are_rejected_as_malformed(body: bytes) -> None:
    with pytest.raises(WebhookMalformed):
        sendgrid.parse_webhook(body)


def test_sendgrid_unknown_event_of_any_shape_is_other() -> None:
    item = {"event": "new_kind", "sg_event_id": "x", "timestamp": "today", "email": 5}

    [event] = parse_sendgrid(item)

    assert event.kind is EventKind.OTHER
    assert event.payload == item
