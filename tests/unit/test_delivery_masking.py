"""Delivery settings as ``lqs clients show`` prints them: no secret survives masking."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from lqs.domain.delivery import (
    MASK,
    mask_secret,
    masked_delivery,
    parse_delivery_settings,
    provider_settings,
)

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "delivery.yaml"
SENDGRID_PUBLIC_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62"
    "gW+2fNfRNc0mCKQVXh9ciS+0zXzVlmDGQ=="
)


def full_delivery() -> dict[str, Any]:
    """docs/examples/delivery.yaml with every secret setting a provider has filled in."""
    spec: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    spec["resend"]["webhook_secret"] = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LW9mLXJlc2VuZA=="
    spec["sendgrid"]["webhook_public_key"] = SENDGRID_PUBLIC_KEY
    parse_delivery_settings(spec)  # a full and valid file
    return spec


def secrets_of(spec: dict[str, Any]) -> list[str]:
    """Every value of a secret setting (a ``SecretStr`` field of its provider's model)."""
    found = []
    for name, model in provider_settings().items():
        for field, info in model.model_fields.items():
            if "SecretStr" in str(info.annotation) and field in spec.get(name, {}):
                found.append(spec[name][field])
    return found


def hidden_parts(secret: str) -> list[str]:
    """Every 5 characters in a row of ``secret`` past its format prefix: showing any of them
    would show more than the 4 last characters masking allows."""
    body = secret.removeprefix("whsec_").removeprefix("re_").removeprefix("SG.")
    return [body[i : i + 5] for i in range(len(body) - 4)]


def test_the_full_example_has_a_value_for_every_secret_setting() -> None:
    every = {
        (name, field)
        for name, model in provider_settings().items()
        for field, info in model.model_fields.items()
        if "SecretStr" in str(info.annotation)
    }
    spec = full_delivery()

    assert {(n, f) for n, f in every if f in spec.get(n, {})} == every
    assert len(secrets_of(spec)) == len(every) == 6


def random_secrets(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with every secret replaced by a random one of the same format: the
    example's own (``re_example_key``) share words with its addresses."""
    rng = random.Random(14)
    alphabet = string.ascii_letters + string.digits

    def token(n: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(n))

    spec["resend"]["api_key"] = "re_" + token(32)
    spec["resend"]["webhook_secret"] = "whsec_" + token(32)
    spec["sendgrid"]["api_key"] = "SG." + token(22) + "." + token(43)
    spec["twilio"]["auth_token"] = token(32)
    spec["webpush"]["vapid_private_key"] = token(43)
    spec["webhook"]["secret"] = "whsec_" + token(40)
    parse_delivery_settings(spec)
    return spec


def test_no_secret_of_the_full_example_is_shown() -> None:
    spec = full_delivery()

    shown = json.dumps(masked_delivery(spec), ensure_ascii=False)

    for secret in secrets_of(spec):
        assert secret not in shown


def test_no_five_characters_of_any_secret_are_shown() -> None:
    spec = random_secrets(full_delivery())

    shown = json.dumps(masked_delivery(spec), ensure_ascii=False)

    for secret in secrets_of(spec):
        for part in hidden_parts(secret):
            assert part not in shown, (secret, part)


def test_what_is_not_secret_is_shown_as_stored() -> None:
    spec = full_delivery()

    shown: dict[str, Any] = masked_delivery(spec)  # type: ignore[assignment]

    assert shown["email"] == {"primary": "resend", "secondary": "sendgrid", "failover_after": 3}
    assert shown["resend"]["from_address"] == "leads@acme.example"
    assert shown["resend"]["base_url"] == "http://127.0.0.1:8025"
    assert shown["twilio"]["account_sid"] == spec["twilio"]["account_sid"]
    assert shown["twilio"]["from_number"] == "+12015550100"
    assert shown["webpush"]["vapid_subject"] == "mailto:ops@acme.example"
    assert shown["webhook"]["url"] == "http://127.0.0.1:8025/hooks/acme"


def test_secrets_keep_their_format_prefix_and_long_ones_their_last_four() -> None:
    shown: dict[str, Any] = masked_delivery(full_delivery())  # type: ignore[assignment]

    assert shown["resend"]["api_key"] == f"re_{MASK}"  # re_example_key: too short for a tail
    assert shown["resend"]["webhook_secret"] == f"whsec_{MASK}ZA=="
    assert shown["webhook"]["secret"] == f"whsec_{MASK}+/KU"
    assert shown["twilio"]["auth_token"] == MASK
    assert shown["webpush"]["vapid_private_key"] == f"{MASK}R0Jk"
    assert shown["sendgrid"]["webhook_public_key"] == "MFkwEwYH…VlmDGQ=="


def test_a_pem_key_shows_nothing_of_itself() -> None:
    pem = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"

    assert mask_secret(pem) == MASK


def test_unknown_settings_are_masked_whole_keeping_their_shape() -> None:
    spec = {
        "mailgun": {"api_key": "key-0123456789abcdef0123", "region": "eu", "retries": 3},
        "twilio": {"auth_token": "t" * 32, "extra": {"password": "hunter2hunter2"}},
        "email": "resend",
    }

    shown = masked_delivery(spec)

    assert shown == {
        "mailgun": {"api_key": f"{MASK}0123", "region": MASK, "retries": MASK},
        "twilio": {"auth_token": f"{MASK}tttt", "extra": {"password": MASK}},
        "email": MASK,
    }


@given(st.text(min_size=1, max_size=200))
def test_masking_never_shows_more_than_four_characters_of_a_secret(secret: str) -> None:
    shown = mask_secret(secret)

    prefix = next((p for p in ("whsec_", "re_", "SG.") if secret.startswith(p)), "")
    assert shown.startswith(prefix + MASK)
    tail = shown.removeprefix(prefix + MASK)
    assert len(tail) in (0, 4)
    assert len(secret) - len(prefix) - len(tail) >= 16 or not tail
