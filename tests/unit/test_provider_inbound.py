"""The inbound half of the provider adapters: verify a delivery webhook, parse its events.

The ✓ vectors come from the shared reference wire-formats.md (each provider's published
example); every other key and secret is generated here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import uuid4

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from standardwebhooks.webhooks import Webhook
from twilio.request_validator import RequestValidator

from lqs.domain.delivery import SendGridSettings
from lqs.domain.events import EventKind
from lqs.providers import resend, sendgrid, twilio
from lqs.providers.base import (
    OutboundMessage,
    ProviderConfigError,
    WebhookMalformed,
    WebhookRejected,
)

# Resend (Svix) ---------------------------------------------------------------------------

SVIX_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SVIX_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SVIX_TS = 1614265330
SVIX_BODY = b'{"test": 2432232314}'
SVIX_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def svix_headers(
    msg_id: str = SVIX_ID, ts: int = SVIX_TS, sig: str = SVIX_SIGNATURE
) -> dict[str, str]:
    return {"svix-id": msg_id, "svix-timestamp": str(ts), "svix-signature": sig}


def new_svix_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def svix_sign(secret: str, msg_id: str, ts: int, body: bytes) -> str:
    """The signature as the Standard Webhooks reference library computes it (= Svix's)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    return Webhook(key).sign(msg_id, datetime.fromtimestamp(ts, UTC), body.decode())


def signed_resend(
    body: bytes, secret: str, *, ts: int = SVIX_TS, msg_id: str = "msg_1"
) -> dict[str, str]:
    return svix_headers(msg_id, ts, svix_sign(secret, msg_id, ts, body))


def test_resend_vector_verifies() -> None:
    resend.verify_webhook(SVIX_BODY, svix_headers(), SVIX_SECRET, now=SVIX_TS)


def test_resend_signer_in_these_tests_reproduces_the_vector() -> None:
    assert svix_sign(SVIX_SECRET, SVIX_ID, SVIX_TS, SVIX_BODY) == SVIX_SIGNATURE


@pytest.mark.parametrize("age", [0, 1, 299, 300, -300, -1])
def test_resend_accepts_timestamps_within_300_seconds(age: int) -> None:
    resend.verify_webhook(SVIX_BODY, svix_headers(), SVIX_SECRET, now=SVIX_TS + age)


@pytest.mark.parametrize("age", [301, -301, 300.5, 86400, -86400])
def test_resend_rejects_timestamps_too_old_or_in_the_future(age: float) -> None:
    with pytest.raises(WebhookRejected, match="timestamp outside the 300 s tolerance"):
        resend.verify_webhook(SVIX_BODY, svix_headers(), SVIX_SECRET, now=SVIX_TS + age)


def test_resend_tolerance_is_a_parameter() -> None:
    resend.verify_webhook(SVIX_BODY, svix_headers(), SVIX_SECRET, now=SVIX_TS + 600, tolerance=600)
    with pytest.raises(WebhookRejected):
        resend.verify_webhook(
            SVIX_BODY, svix_headers(), SVIX_SECRET, now=SVIX_TS + 61, tolerance=60
        )


def test_resend_rejects_a_tampered_body() -> None:
    with pytest.raises(WebhookRejected, match="no signature matched"):
        resend.verify_webhook(b'{"test": 2432232315}', svix_headers(), SVIX_SECRET, now=SVIX_TS)


def test_resend_rejects_a_reserialised_body() -> None:
    reserialised = json.dumps(json.loads(SVIX_BODY), separators=(",", ":")).encode()
    assert reserialised != SVIX_BODY

    with pytest.raises(WebhookRejected, match="no signature matched"):
        resend.verify_webhook(reserialised, svix_headers(), SVIX_SECRET, now=SVIX_TS)


def test_resend_rejects_the_wrong_secret() -> None:
    with pytest.raises(WebhookRejected, match="no signature matched"):
        resend.verify_webhook(SVIX_BODY, svix_headers(), new_svix_secret(), now=SVIX_TS)


@pytest.mark.parametrize(
    ("changed", "value"), [("svix-id", "msg_other"), ("svix-timestamp", str(SVIX_TS + 1))]
)
def test_resend_signature_covers_the_id_and_the_timestamp(changed: str, value: str) -> None:
    headers = {**svix_headers(), changed: value}

    with pytest.raises(WebhookRejected, match="no signature matched"):
        resend.verify_webhook(SVIX_BODY, headers, SVIX_SECRET, now=SVIX_TS)


@pytest.mark.parametrize("missing", ["svix-id", "svix-timestamp", "svix-signature"])
def test_resend_rejects_a_missing_header(missing: str) -> None:
    headers = {k: v for k, v in svix_headers().items() if k != missing}

    with pytest.raises(WebhookRejected, match=f"missing header {missing}") as caught:
        resend.verify_webhook(SVIX_BODY, headers, SVIX_SECRET, now=SVIX_TS)
    assert caught.value.reason == f"missing header {missing}"


@pytest.mark.parametrize("missing", ["svix-id", "svix-timestamp", "svix-signature"])
def test_resend_treats_an_empty_header_as_missing(missing: str) -> None:
    headers = {**svix_headers(), missing: " "}

    with pytest.raises(WebhookRejected, match=f"missing header {missing}"):
        resend.verify_webhook(SVIX_BODY, headers, SVIX_SECRET, now=SVIX_TS)


def test_resend_header_names_are_case_insensitive() -> None:
    headers = {"Svix-Id": SVIX_ID, "SVIX-TIMESTAMP": str(SVIX_TS), "svix-Signature": SVIX_SIGNATURE}

    resend.verify_webhook(SVIX_BODY, headers, SVIX_SECRET, now=SVIX_TS)
    resend.verify_webhook(SVIX_BODY, httpx.Headers(headers), SVIX_SECRET, now=SVIX_TS)


def test_resend_accepts_one_valid_signature_among_rotated_ones() -> None:
    old = svix_sign(new_svix_secret(), SVIX_ID, SVIX_TS, SVIX_BODY)
    other = svix_sign(new_svix_secret(), SVIX_ID, SVIX_TS, SVIX_BODY)
    header = f"{old} {SVIX_SIGNATURE} {other}"

    resend.verify_webhook(SVIX_BODY, svix_headers(sig=header), SVIX_SECRET, now=SVIX_TS)


def test_resend_skips_other_versions_and_unreadable_entries() -> None:
    good = SVIX_SIGNATURE.removeprefix("v1,")
    header = f"v1a,{good} v2,xyz v1,not*base64 garbage v1, {SVIX_SIGNATURE}"

    resend.verify_webhook(SVIX_BODY, svix_headers(sig=header), SVIX_SECRET, now=SVIX_TS)


def test_resend_ignores_a_matching_signature_under_another_version() -> None:
    good = SVIX_SIGNATURE.removeprefix("v1,")

    with pytest.raises(WebhookRejected, match="no signature matched"):
        resend.verify_webhook(SVIX_BODY, svix_headers(sig=f"v2,{good}"), SVIX_SECRET, now=SVIX_TS)


@pytest.mark.parametrize("signature", ["v1,***", "v1", ",", "v1,é", "v1,AAAA"])
def test_resend_rejects_unreadable_signatures(signature: str) -> None:
    with pytest.raises(WebhookRejected, match="no signature matched"):
        resend.verify_webhook(SVIX_BODY, svix_headers(sig=signature), SVIX_SECRET, now=SVIX_TS)


@pytest.mark.parametrize(
    "timestamp", ["soon", "1614265330.5", "-1614265330", "1_614_265_330", "١٢"]
)
def test_resend_rejects_a_timestamp_that_is_not_unix_seconds(timestamp: str) -> None:
    headers = {**svix_headers(), "svix-timestamp": timestamp}

    with pytest.raises(WebhookRejected, match="svix-timestamp is not a Unix timestamp"):
        resend.verify_webhook(SVIX_BODY, headers, SVIX_SECRET, now=SVIX_TS)


def test_resend_verifies_raw_bytes_that_are_not_utf8() -> None:
    body = b'{"x": "\xff"}'
    secret = new_svix_secret()
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = hmac.new(key, f"msg_1.{SVIX_TS}.".encode() + body, hashlib.sha256).digest()
    headers = svix_headers("msg_1", SVIX_TS, "v1," + base64.b64encode(signed).decode())

    resend.verify_webhook(body, headers, secret, now=SVIX_TS)
    with pytest.raises(WebhookMalformed):
        resend.parse_webhook(body, headers)


def test_resend_secret_prefix_is_optional() -> None:
    resend.verify_webhook(
        SVIX_BODY, svix_headers(), SVIX_SECRET.removeprefix("whsec_"), now=SVIX_TS
    )


@pytest.mark.parametrize("secret", ["", "whsec_", "whsec_***", "whsec_abc!"])
def test_resend_unusable_secret_is_a_configuration_error(secret: str) -> None:
    with pytest.raises(ProviderConfigError, match=r"resend\.webhook_secret"):
        resend.verify_webhook(SVIX_BODY, svix_headers(), secret, now=SVIX_TS)


def test_resend_verifies_a_generated_secret_at_the_current_time() -> None:
    secret = new_svix_secret()
    body = json.dumps(resend_event("email.delivered")).encode()
    now = int(datetime.now(UTC).timestamp())

    resend.verify_webhook(body, signed_resend(body, secret, ts=now), secret)


def resend_event(kind: str, **data: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "created_at": "2026-02-22T23:41:12.126Z",
        "data": {
            "email_id": "56761188-7520-42d8-8898-ff6fc54ce618",
            "from": "Acme <onboarding@resend.dev>",
            "to": ["delivered@resend.dev", "other@example.com"],
            "subject": "Sending this example",
            "created_at": "2026-02-22 23:41:11.894719+00",
            **data,
        },
    }


def parse_resend(event: Any, event_id: str = "msg_2") -> list[Any]:
    return resend.parse_webhook(json.dumps(event).encode(), {"Svix-Id": event_id})


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("email.sent", EventKind.ACCEPTED),
        ("email.delivered", EventKind.DELIVERED),
        ("email.delivery_delayed", EventKind.DELAYED),
        ("email.complained", EventKind.COMPLAINED),
        ("email.failed", EventKind.FAILED),
        ("email.suppressed", EventKind.DROPPED),
        ("email.opened", EventKind.ENGAGED),
        ("email.clicked", EventKind.ENGAGED),
        ("email.scheduled", EventKind.OTHER),
        ("email.received", EventKind.OTHER),
        ("email.something_new", EventKind.OTHER),
    ],
)
def test_resend_event_types_map_to_kinds(kind: str, expected: EventKind) -> None:
    [event] = parse_resend(resend_event(kind))

    assert event.kind is expected
    assert event.raw_type == kind


def test_resend_event_fields() -> None:
    payload = resend_event("email.delivered")

    [event] = parse_resend(payload, event_id="msg_abc")

    assert event.provider == "resend"
    assert event.event_id == "msg_abc"
    assert event.external_id == "56761188-7520-42d8-8898-ff6fc54ce618"
    assert event.occurred_at == datetime(2026, 2, 22, 23, 41, 12, 126000, tzinfo=UTC)
    assert event.recipient == "delivered@resend.dev"
    assert event.communication_id is None
    assert event.payload == payload


def test_resend_permanent_bounce_is_bounced() -> None:
    bounce = {"type": "Permanent", "subType": "Suppressed", "message": "The address is suppressed"}

    [event] = parse_resend(resend_event("email.bounced", bounce=bounce))

    assert event.kind is EventKind.BOUNCED
    assert event.reason == "The address is suppressed"
    assert event.error_code == "Suppressed"


@pytest.mark.parametrize("bounce_type", ["Temporary", "Transient", "Undetermined", None])
def test_resend_other_bounces_are_soft(bounce_type: str | None) -> None:
    bounce = {"type": bounce_type, "subType": "MailboxFull", "message": "Mailbox full"}

    [event] = parse_resend(resend_event("email.bounced", bounce=bounce))

    assert event.kind is EventKind.SOFT_BOUNCED
    assert event.reason == "Mailbox full"
    assert event.error_code == "MailboxFull"


def test_resend_failed_carries_its_reason() -> None:
    [event] = parse_resend(resend_event("email.failed", failed={"reason": "reached_daily_quota"}))

    assert event.kind is EventKind.FAILED
    assert event.reason == "reached_daily_quota"


@pytest.mark.parametrize(
    ("created_at", "expected"),
    [
        ("2026-02-22T23:41:12Z", datetime(2026, 2, 22, 23, 41, 12, tzinfo=UTC)),
        ("2026-02-22T23:41:12.5Z", datetime(2026, 2, 22, 23, 41, 12, 500000, tzinfo=UTC)),
        (
            "2026-02-22T23:41:12.123456+02:00",
            datetime(2026, 2, 22, 23, 41, 12, 123456, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("2026-02-22T23:41:12-05:30", datetime(2026, 2, 23, 5, 11, 12, tzinfo=UTC)),
        ("2026-02-22T23:41:12", datetime(2026, 2, 22, 23, 41, 12, tzinfo=UTC)),
    ],
)
def test_resend_created_at_becomes_an_aware_datetime(created_at: str, expected: datetime) -> None:
    [event] = parse_resend({**resend_event("email.sent"), "created_at": created_at})

    assert event.occurred_at == expected
    assert event.occurred_at is not None
    assert event.occurred_at.tzinfo is not None


@pytest.mark.parametrize(
    "tags",
    [
        {"communication_id": "COMM", "category": "welcome"},
        [{"name": "category", "value": "welcome"}, {"name": "communication_id", "value": "COMM"}],
    ],
)
def test_resend_reads_our_communication_id_from_the_tags(tags: Any) -> None:
    communication_id = uuid4()
    tags = json.loads(json.dumps(tags).replace("COMM", str(communication_id)))

    [event] = parse_resend(resend_event("email.delivered", tags=tags))

    assert event.communication_id == communication_id


@pytest.mark.parametrize(
    "tags", [{"communication_id": "not-a-uuid"}, "communication_id", [1, None]]
)
def test_resend_ignores_tags_it_cannot_read(tags: Any) -> None:
    [event] = parse_resend(resend_event("email.delivered", tags=tags))

    assert event.communication_id is None


def test_resend_unknown_type_of_any_shape_is_other() -> None:
    payload = {"type": "contact.created", "created_at": 7, "data": ["not", "an", "object"]}

    [event] = parse_resend(payload)

    assert event.kind is EventKind.OTHER
    assert event.raw_type == "contact.created"
    assert event.external_id is None
    assert event.payload == payload


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b'{"type": "email.sent"',
        b"[]",
        b'"email.sent"',
        b"null",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"created_at": "2026-02-22T23:41:12Z", "data": {"email_id": "x"}}',
        b'{"type": 5, "data": {"email_id": "x"}}',
        b'{"type": "", "data": {"email_id": "x"}}',
        b'{"type": "email.sent"}',
        b'{"type": "email.sent", "data": []}',
        b'{"type": "email.sent", "data": {}}',
        b'{"type": "email.sent", "data": {"email_id": ""}}',
        b'{"type": "email.sent", "data": {"email_id": {"id": 1}}}',
        b'{"type": "email.sent", "data": {"email_id": "x", "to": "a@b.c"}, "created_at": "yesterday"}',
        b'{"type": "email.sent", "data": {"email_id": "x"}, "created_at": 1614265330}',
        b'{"type": "email.sent", "data": {"email_id": "x", "to": [1]}}',
        b'{"type": "email.sent", "data": {"email_id": "x", "to": {"a": 1}}}',
        b'{"type": "email.bounced", "data": {"email_id": "x", "bounce": "Permanent"}}',
        b'{"type": "email.bounced", "data": {"email_id": "x", "bounce": {"message": []}}}',
        b'{"type": "email.failed", "data": {"email_id": "x", "failed": ["quota"]}}',
    ],
)
def test_resend_malformed_bodies_are_rejected_as_malformed(body: bytes) -> None:
    with pytest.raises(WebhookMalformed):
        resend.parse_webhook(body, {"svix-id": "msg_1"})


def test_resend_parse_needs_the_svix_id() -> None:
    with pytest.raises(WebhookMalformed, match="svix-id"):
        resend.parse_webhook(json.dumps(resend_event("email.sent")).encode(), {})


def test_resend_recipient_may_be_a_single_address_or_absent() -> None:
    [single] = parse_resend(resend_event("email.sent", to="one@example.com"))
    [empty] = parse_resend(resend_event("email.sent", to=[]))

    assert single.recipient == "one@example.com"
    assert empty.recipient is None


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


# Shared ----------------------------------------------------------------------------------


def test_rejections_and_malformations_carry_a_reason() -> None:
    rejected = WebhookRejected("no signature matched")
    malformed = WebhookMalformed("the body is not JSON")

    assert rejected.reason == str(rejected) == "no signature matched"
    assert malformed.reason == str(malformed) == "the body is not JSON"
