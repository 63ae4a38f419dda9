"""The API's memory of API key lookups (lqs.api.key_cache)."""

from __future__ import annotations

import uuid

import pytest

from lqs.api.key_cache import ApiKeyCache
from lqs.db.clients import ApiPrincipal

KEY = "lqs_" + "k" * 43
PRINCIPAL = ApiPrincipal(uuid.uuid4(), uuid.uuid4(), "acme", 600, {})


class Lookups:
    """A stand-in for the database lookup: counts its calls, answers what it is told."""

    def __init__(self, answer: ApiPrincipal | None = PRINCIPAL) -> None:
        self.answer = answer
        self.calls = 0

    async def __call__(self) -> ApiPrincipal | None:
        self.calls += 1
        return self.answer


async def test_an_answer_is_kept_for_the_ttl_then_looked_up_again() -> None:
    now = [0.0]
    cache = ApiKeyCache(5.0, clock=lambda: now[0])
    look_up = Lookups()

    first = await cache.principal(KEY, look_up)
    now[0] = 4.99
    second = await cache.principal(KEY, look_up)
    look_up.answer = None  # revoked meanwhile
    now[0] = 5.01
    third = await cache.principal(KEY, look_up)

    assert (first, second, third) == (PRINCIPAL, PRINCIPAL, None)
    assert look_up.calls == 2


async def test_unknown_keys_are_remembered_too() -> None:
    cache = ApiKeyCache(5.0, clock=lambda: 0.0)
    look_up = Lookups(None)

    assert await cache.principal(KEY, look_up) is None
    assert await cache.principal(KEY, look_up) is None
    assert look_up.calls == 1


async def test_forget_makes_the_next_request_look_up() -> None:
    cache = ApiKeyCache(5.0, clock=lambda: 0.0)
    look_up = Lookups()
    await cache.principal(KEY, look_up)

    cache.forget()
    look_up.answer = None

    assert await cache.principal(KEY, look_up) is None
    assert look_up.calls == 2


async def test_the_least_recently_used_keys_go_first() -> None:
    cache = ApiKeyCache(5.0, max_keys=2, clock=lambda: 0.0)
    look_up = Lookups()
    for key in ("lqs_a", "lqs_b", "lqs_a", "lqs_c"):  # lqs_b is the least recently used
        await cache.principal(key, look_up)
    assert (len(cache), look_up.calls) == (2, 3)

    await cache.principal("lqs_a", look_up)
    await cache.principal("lqs_b", look_up)
    assert look_up.calls == 4  # a was kept; b was looked up again


async def test_a_ttl_of_zero_looks_up_every_time_and_keeps_nothing() -> None:
    cache = ApiKeyCache(0)
    look_up = Lookups()
    await cache.principal(KEY, look_up)
    await cache.principal(KEY, look_up)
    assert (look_up.calls, len(cache)) == (2, 0)


async def test_a_failed_lookup_is_not_remembered() -> None:
    cache = ApiKeyCache(5.0, clock=lambda: 0.0)

    async def down() -> ApiPrincipal | None:
        raise ConnectionError("database restarting")

    with pytest.raises(ConnectionError):
        await cache.principal(KEY, down)
    assert len(cache) == 0


def test_the_ttl_is_at_most_five_seconds() -> None:
    with pytest.raises(ValueError, match="ttl"):
        ApiKeyCache(6.0)
    with pytest.raises(ValueError, match="max_keys"):
        ApiKeyCache(1.0, max_keys=0)
