"""The per-key token bucket."""

from __future__ import annotations

import uuid

from lqs.api.limits import RateLimiter


def test_a_key_gets_its_limit_then_waits_for_a_token() -> None:
    limiter = RateLimiter()
    key = uuid.uuid4()
    assert [limiter.acquire(key, 60, now=0.0) for _ in range(60)] == [0.0] * 60
    wait = limiter.acquire(key, 60, now=0.0)
    assert 0.99 < wait <= 1.0
    assert limiter.acquire(key, 60, now=1.0) == 0.0


def test_keys_are_limited_independently() -> None:
    limiter = RateLimiter()
    a, b = uuid.uuid4(), uuid.uuid4()
    limiter.acquire(a, 1, now=0.0)
    assert limiter.acquire(a, 1, now=0.0) > 0
    assert limiter.acquire(b, 1, now=0.0) == 0.0


def test_tokens_refill_up_to_the_limit_only() -> None:
    limiter = RateLimiter()
    key = uuid.uuid4()
    limiter.acquire(key, 2, now=0.0)
    # An hour idle refills to 2, not to 120.
    assert [limiter.acquire(key, 2, now=3600.0) for _ in range(3)][:2] == [0.0, 0.0]
    assert limiter.acquire(key, 2, now=3600.0) > 0


def test_past_its_key_cap_a_limiter_forgets_buckets_that_have_refilled() -> None:
    limiter = RateLimiter(max_keys=3)
    for address in ("a", "b", "c"):
        limiter.acquire(address, 10, now=0.0)
    for _ in range(10):
        limiter.acquire("c", 10, now=50.0)  # "c" is drained at 50 s

    limiter.acquire("d", 10, now=61.0)

    assert len(limiter) == 2  # "a" and "b" forgotten: a new bucket starts full anyway
    assert limiter.acquire("c", 10, now=61.0) == 0.0  # 11 s refilled 1.8 tokens
    assert limiter.acquire("c", 10, now=61.0) > 0  # "c"'s state was kept
