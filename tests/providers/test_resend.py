"""Resend: the adapter against the provider simulator (the request, how each answer is
classified, idempotency end to end), and its delivery webhooks (Svix signatures, events).

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
from standardwebhooks.webhooks import Webhook

from lqs.domain.delivery import Verdict
from lqs.domain.events import EventKind
from lqs.providers import resend
from lqs.providers.base import (
    ProviderConfigError,
    WebhookMalformed,
    WebhookRejected,
)
from lqs.providers.resend import CONCURRENT_REQUEST_WAIT, ResendProvider
from lqs.simulator import SimulatorControl
from tests.providers.simulated import (
    HANG,
    RECIPIENT,
    RESEND_KEY,
    SENDER,
    configure,
    email,
    resend_settings,
    the_request,
    wait_until,
)

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
    # Retried no sooner than CONCURRENT_REQUEST_WAIT: quick retries would all meet the 409.
    assert in_flight.retry_after == CONCURRENT_REQUEST_WAIT
    [stored] = sim.messages("resend")
    assert replayed.accepted
    assert replayed.external_id == stored.provider_message_id


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
