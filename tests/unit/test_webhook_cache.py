"""The API's memory of webhook credentials (lqs.api.webhook_cache)."""

from __future__ import annotations

import uuid

import pytest

from lqs.api.webhook_cache import WebhookCandidateCache
from lqs.db.clients import WebhookCandidate
from lqs.domain.delivery import parse_delivery_settings

CLIENT = uuid.uuid4()


def _candidates(secret: str) -> list[WebhookCandidate]:
    delivery = parse_delivery_settings(
        {"resend": {"api_key": "re_x", "from_address": "a@b.example", "webhook_secret": secret}}
    )
    return [WebhookCandidate(CLIENT, delivery)]


class _Lookups:
    def __init__(self) -> None:
        self.calls = 0
        self.answer = _candidates("whsec_first")

    async def __call__(self) -> list[WebhookCandidate]:
        self.calls += 1
        return self.answer


async def test_an_answer_is_remembered_for_the_ttl_then_looked_up_again() -> None:
    now = [0.0]
    cache = WebhookCandidateCache(5.0, clock=lambda: now[0])
    look_up = _Lookups()

    first = await cache.candidates("resend", CLIENT, look_up)
    now[0] = 4.9
    second = await cache.candidates("resend", CLIENT, look_up)
    now[0] = 5.1
    third = await cache.candidates("resend", CLIENT, look_up)

    assert (first[1], second[1], third[1]) == (False, True, False)
    assert look_up.calls == 2


async def test_fresh_looks_up_even_when_remembered_and_keeps_the_new_answer() -> None:
    cache = WebhookCandidateCache(5.0, clock=lambda: 0.0)
    look_up = _Lookups()
    await cache.candidates("resend", CLIENT, look_up)
    look_up.answer = _candidates("whsec_rotated")

    found, remembered = await cache.candidates("resend", CLIENT, look_up, fresh=True)
    again, remembered_again = await cache.candidates("resend", CLIENT, look_up)

    assert (remembered, remembered_again) == (False, True)
    assert found is look_up.answer
    assert again is look_up.answer
    assert look_up.calls == 2


async def test_providers_and_clients_are_remembered_apart_within_the_bound() -> None:
    cache = WebhookCandidateCache(5.0, max_entries=2, clock=lambda: 0.0)
    look_up = _Lookups()

    for key in (("resend", CLIENT), ("sendgrid", CLIENT), ("resend", None)):
        await cache.candidates(*key, look_up)
    _, remembered = await cache.candidates("resend", CLIENT, look_up)

    assert len(cache) == 2
    assert remembered is False  # the least recently used went first
    assert look_up.calls == 4


async def test_a_ttl_of_zero_remembers_nothing() -> None:
    cache = WebhookCandidateCache(0)
    look_up = _Lookups()

    await cache.candidates("resend", CLIENT, look_up)
    _, remembered = await cache.candidates("resend", CLIENT, look_up)

    assert remembered is False
    assert (look_up.calls, len(cache)) == (2, 0)


async def test_a_failed_lookup_remembers_nothing() -> None:
    cache = WebhookCandidateCache(5.0, clock=lambda: 0.0)

    async def failing() -> list[WebhookCandidate]:
        raise RuntimeError("database away")

    with pytest.raises(RuntimeError):
        await cache.candidates("resend", CLIENT, failing)
    assert len(cache) == 0


def test_the_ttl_and_size_are_bounded() -> None:
    with pytest.raises(ValueError, match="ttl"):
        WebhookCandidateCache(6.0)
    with pytest.raises(ValueError, match="max_entries"):
        WebhookCandidateCache(1.0, max_entries=0)
