"""Callback signatures: the checked vectors of wire-formats.md, and round trips.

The simulator signs (``lqs.simulator.signing``); the receiver's verifiers
(``tests/simulator/receiver.py``) and the official SDKs check, each on its own.
"""

from __future__ import annotations

import base64
import time

import pytest
import resend
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sendgrid.helpers.eventwebhook import EventWebhook
from twilio.request_validator import RequestValidator

from lqs.simulator.signing import (
    load_sendgrid_key,
    new_sendgrid_key,
    new_svix_secret,
    sendgrid_public_key,
    sendgrid_signature,
    svix_key,
    svix_signature,
    twilio_signature,
)
from tests.simulator.receiver import (
    sendgrid_signature_valid,
    svix_problem,
    twilio_expected_signature,
)

SVIX_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SVIX_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SVIX_TIMESTAMP = 1614265330
SVIX_BODY = b'{"test": 2432232314}'
SVIX_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

SENDGRID_PUBLIC_KEY = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
SENDGRID_TIMESTAMP = "1600112502"
SENDGRID_SIGNATURE = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM="
SENDGRID_BODY = (
    b'[{"email":"hello@world.com","event":"dropped","reason":"Bounced Address",'
    b'"sg_event_id":"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",'
    b'"sg_message_id":"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",'
    b'"smtp-id":"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>","timestamp":1600112492}]'
    b"\r\n"
)

TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_TOKEN = "12345"
TWILIO_PARAMS = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Caller", "+12349013030"),
    ("Digits", "1234"),
    ("From", "+12349013030"),
    ("To", "+18005551212"),
]
TWILIO_SIGNATURE = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def svix_headers(signature: str, timestamp: int = SVIX_TIMESTAMP) -> dict[str, str]:
    return {"svix-id": SVIX_ID, "svix-timestamp": str(timestamp), "svix-signature": signature}


# --- Resend (Svix) ----------------------------------------------------------------------------


def test_svix_signature_reproduces_the_checked_vector() -> None:
    assert svix_signature(SVIX_SECRET, SVIX_ID, SVIX_TIMESTAMP, SVIX_BODY) == SVIX_SIGNATURE


def test_receiver_accepts_the_svix_vector_and_refuses_a_changed_body() -> None:
    headers = svix_headers(SVIX_SIGNATURE)

    assert svix_problem(SVIX_SECRET, headers, SVIX_BODY, now=SVIX_TIMESTAMP) is None
    assert (
        svix_problem(SVIX_SECRET, headers, SVIX_BODY + b" ", now=SVIX_TIMESTAMP)
        == "no v1 signature matches"
    )


def test_receiver_refuses_a_svix_timestamp_older_than_five_minutes() -> None:
    problem = svix_problem(
        SVIX_SECRET, svix_headers(SVIX_SIGNATURE), SVIX_BODY, now=SVIX_TIMESTAMP + 301
    )

    assert problem == "svix-timestamp is more than 5 minutes away"


def test_svix_signature_made_now_verifies_with_the_resend_sdk() -> None:
    now = int(time.time())
    signature = svix_signature(SVIX_SECRET, SVIX_ID, now, SVIX_BODY)

    payload = resend.Webhooks.verify(
        {
            "payload": SVIX_BODY.decode(),
            "headers": {"id": SVIX_ID, "timestamp": str(now), "signature": signature},
            "webhook_secret": SVIX_SECRET,
        }
    )

    assert payload == {"test": 2432232314}


def test_generated_svix_secret_is_whsec_and_24_random_bytes() -> None:
    secret = new_svix_secret()

    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 24
    assert new_svix_secret() != secret


@pytest.mark.parametrize("secret", ["whsec_not base64!", "whsec_"])
def test_svix_secret_that_is_not_a_base64_key_is_refused(secret: str) -> None:
    with pytest.raises(ValueError, match="whsec_"):
        svix_key(secret)


# --- SendGrid (ECDSA P-256) -------------------------------------------------------------------


def test_receiver_verifies_the_sendgrid_vector_with_its_public_key() -> None:
    assert sendgrid_signature_valid(
        SENDGRID_PUBLIC_KEY, SENDGRID_TIMESTAMP, SENDGRID_BODY, SENDGRID_SIGNATURE
    )


def test_sendgrid_sdk_agrees_on_the_vector() -> None:
    verifier = EventWebhook(SENDGRID_PUBLIC_KEY)

    assert verifier.verify_signature(SENDGRID_BODY.decode(), SENDGRID_SIGNATURE, SENDGRID_TIMESTAMP)


@pytest.mark.parametrize(
    ("timestamp", "body"),
    [
        ("1600112503", SENDGRID_BODY),
        (SENDGRID_TIMESTAMP, SENDGRID_BODY.removesuffix(b"\r\n")),
    ],
    ids=["other timestamp", "body without its CRLF"],
)
def test_sendgrid_vector_fails_for_other_bytes(timestamp: str, body: bytes) -> None:
    assert not sendgrid_signature_valid(SENDGRID_PUBLIC_KEY, timestamp, body, SENDGRID_SIGNATURE)


def test_sendgrid_signature_round_trips_with_a_generated_key() -> None:
    key = new_sendgrid_key()
    public_key = sendgrid_public_key(key)
    timestamp = int(time.time())

    signature = sendgrid_signature(key, timestamp, SENDGRID_BODY)

    assert sendgrid_signature_valid(public_key, str(timestamp), SENDGRID_BODY, signature)
    assert EventWebhook(public_key).verify_signature(
        SENDGRID_BODY.decode(), signature, str(timestamp)
    )
    assert not sendgrid_signature_valid(
        sendgrid_public_key(new_sendgrid_key()), str(timestamp), SENDGRID_BODY, signature
    )


def test_sendgrid_public_key_is_base64_der_subject_public_key_info() -> None:
    key = new_sendgrid_key()

    loaded = serialization.load_der_public_key(base64.b64decode(sendgrid_public_key(key)))

    assert isinstance(loaded, ec.EllipticCurvePublicKey)
    assert loaded.public_numbers() == key.public_key().public_numbers()


@pytest.mark.parametrize(
    "private_format",
    [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL],
    ids=["PKCS8", "SEC1"],
)
def test_sendgrid_key_loads_from_pkcs8_or_sec1_pem(
    private_format: serialization.PrivateFormat,
) -> None:
    key = new_sendgrid_key()
    pem = key.private_bytes(
        serialization.Encoding.PEM, private_format, serialization.NoEncryption()
    ).decode()

    assert load_sendgrid_key(pem).private_numbers() == key.private_numbers()


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.mark.parametrize(
    ("pem", "message"),
    [
        ("not a key", "not an unencrypted PEM private key"),
        (_pem(ec.generate_private_key(ec.SECP384R1())), "not an EC P-256"),
        (_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)), "not an EC P-256"),
    ],
    ids=["garbage", "P-384", "RSA"],
)
def test_sendgrid_key_that_is_not_p256_is_refused(pem: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_sendgrid_key(pem)


# --- Twilio (HMAC-SHA1) -----------------------------------------------------------------------


def test_twilio_signature_reproduces_the_checked_vector() -> None:
    assert twilio_signature(TWILIO_TOKEN, TWILIO_URL, TWILIO_PARAMS) == TWILIO_SIGNATURE


def test_receiver_and_twilio_sdk_agree_on_the_vector() -> None:
    assert twilio_expected_signature(TWILIO_TOKEN, TWILIO_URL, TWILIO_PARAMS) == TWILIO_SIGNATURE
    assert RequestValidator(TWILIO_TOKEN).validate(
        TWILIO_URL, dict(TWILIO_PARAMS), TWILIO_SIGNATURE
    )


def test_twilio_signature_covers_the_url_and_parameter_order_does_not_matter() -> None:
    shuffled = list(reversed(TWILIO_PARAMS))

    assert twilio_signature(TWILIO_TOKEN, TWILIO_URL, shuffled) == TWILIO_SIGNATURE
    assert twilio_signature(TWILIO_TOKEN, TWILIO_URL + "&x=3", TWILIO_PARAMS) != TWILIO_SIGNATURE
