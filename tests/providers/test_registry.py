"""The registry: every provider named once, with what the dispatcher and the webhook
receiver ask of it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from lqs.domain.delivery import (
    DeliverySettings,
    DeliverySettingsError,
    parse_delivery_settings,
    provider_for,
    provider_settings,
)
from lqs.providers.base import AdapterOptions, BatchProvider, InboundRequest
from lqs.providers.registry import INBOUND, PROVIDERS, idempotent

CONFIGURED: dict[str, Any] = {
    "resend": {"api_key": "re_key", "from_address": "a@b.example"},
    "sendgrid": {"api_key": "SG.key", "from_address": "a@b.example"},
    "twilio": {"account_sid": "AC" + "0" * 32, "auth_token": "token", "from_number": "+14155550100"},
    "webpush": {"vapid_private_key": "key", "vapid_subject": "mailto:ops@b.example"},
    "webhook": {"url": "https://hooks.example/lqs", "secret": "whsec_" + "A" * 32},
}  # fmt: skip


def test_every_provider_has_a_delivery_settings_key_and_every_key_a_provider() -> None:
    keys = set(DeliverySettings.model_fields) - {"email"}
    assert set(PROVIDERS) == keys == set(provider_settings()) == set(CONFIGURED)


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_a_provider_carries_the_channel_its_settings_say(name: str) -> None:
    assert PROVIDERS[name].channel == provider_settings()[name].channel


def test_email_can_be_routed_to_email_providers_only() -> None:
    with pytest.raises(DeliverySettingsError, match="must be one of resend, sendgrid"):
        parse_delivery_settings({"email": {"primary": "twilio"}})


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_a_provider_is_registered_under_its_own_name(name: str) -> None:
    assert PROVIDERS[name].name == name


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_a_provider_finds_its_settings_and_only_its_own(name: str) -> None:
    delivery = parse_delivery_settings({name: CONFIGURED[name]})

    assert PROVIDERS[name].settings_of(delivery) is getattr(delivery, name)
    others = [n for n in PROVIDERS if n != name]
    assert all(PROVIDERS[other].settings_of(delivery) is None for other in others)


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_routing_sends_a_providers_channel_to_it(name: str) -> None:
    kind = PROVIDERS[name]
    routing = {"email": {"primary": name}} if kind.channel == "email" else {}
    delivery = parse_delivery_settings({name: CONFIGURED[name], **routing})

    assert provider_for(kind.channel, delivery) == name


def test_only_resend_is_idempotent() -> None:
    assert [name for name in PROVIDERS if idempotent(name)] == ["resend"]
    assert not idempotent("a-provider-nobody-registered")


async def test_each_provider_builds_its_adapter_on_the_client_it_is_given() -> None:
    made: list[bool] = []

    def clients(*, trust_env: bool = True) -> httpx.AsyncClient:
        made.append(trust_env)
        return httpx.AsyncClient()

    for name, kind in PROVIDERS.items():
        adapter = kind.build(clients, AdapterOptions(timeout=2.0))
        assert (adapter.name, adapter.channel) == (name, kind.channel)
    # Push endpoints and webhook URLs are connected to by checked address: no proxy.
    assert made == [name not in ("webpush", "webhook") for name in PROVIDERS]


def test_only_resend_sends_batches() -> None:
    def clients(*, trust_env: bool = True) -> httpx.AsyncClient:
        return httpx.AsyncClient()

    batching = [
        name
        for name, kind in PROVIDERS.items()
        if isinstance(kind.build(clients, AdapterOptions()), BatchProvider)
    ]
    assert batching == ["resend"]


def test_inbound_providers_are_registered_providers_with_verify_and_parse() -> None:
    assert set(INBOUND) <= set(PROVIDERS)
    assert all(callable(i.verify) and callable(i.parse) for i in INBOUND.values())


def test_an_inbound_request_knows_the_public_url_the_provider_called() -> None:
    request = InboundRequest(
        body=b"",
        headers={},
        query={"lqs_id": "1"},
        url="/webhooks/twilio?lqs_id=1",
        public_base_url="https://lqs.example/",
    )

    assert request.public_url == "https://lqs.example/webhooks/twilio?lqs_id=1"
