"""Per-process send limits: requests per second and concurrency per provider, and failover.

Both live in one worker process: N workers allow N times the configured rate (the same
trade-off as the API's rate limiter; see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from lqs.config import ProviderLimits


class ProviderLimiter:
    """Spaces requests ``1/rate`` apart, caps them at ``concurrency``, and pauses every
    request to the provider when it says its limit is used up (429, or
    ``ratelimit-remaining: 0``) for as long as it asked."""

    def __init__(self, limits: ProviderLimits, clock: Callable[[], float] = time.monotonic):
        self.limits = limits
        self._clock = clock
        self._slots = asyncio.Semaphore(limits.concurrency)
        self._interval = 1.0 / limits.rate if limits.rate else 0.0
        self._next_start = 0.0
        self._paused_until = 0.0

    def pause(self, seconds: float) -> None:
        """Hold every request for ``seconds`` from now (a longer pause wins)."""
        self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))

    @property
    def paused_for(self) -> float:
        """Seconds left of the current pause (0 when not paused)."""
        return max(0.0, self._paused_until - self._clock())

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for a concurrency slot and for this request's turn, then hold the slot."""
        async with self._slots:
            while True:
                now = self._clock()
                if self._paused_until > now:
                    await asyncio.sleep(self._paused_until - now)
                    continue
                start = max(now, self._next_start)
                self._next_start = start + self._interval
                if start > now:
                    await asyncio.sleep(start - now)
                break
            yield


class Failover:
    """Counts consecutive transient failures per provider endpoint.

    After ``threshold`` of them the endpoint counts as failing and email goes to the
    secondary provider; every ``cooldown`` seconds one attempt probes the primary again,
    and any answer that is not a transient failure makes it healthy again.
    """

    def __init__(self, cooldown: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.cooldown = cooldown
        self._clock = clock
        self._failures: dict[tuple[str, str], int] = {}
        self._tripped_at: dict[tuple[str, str], float] = {}

    def failing(self, key: tuple[str, str], threshold: int) -> bool:
        """Whether to avoid ``key`` now; lets one probe through per cooldown."""
        if self._failures.get(key, 0) < threshold:
            return False
        now = self._clock()
        tripped = self._tripped_at.setdefault(key, now)
        if now - tripped >= self.cooldown:
            self._tripped_at[key] = now
            return False
        return True

    def record(self, key: tuple[str, str], transient: bool) -> None:
        """Count one answer from ``key``; a transient failure while tripped (a failed
        probe) starts the cooldown again."""
        if not transient:
            self._failures.pop(key, None)
            self._tripped_at.pop(key, None)
            return
        self._failures[key] = self._failures.get(key, 0) + 1
        if key in self._tripped_at:
            self._tripped_at[key] = self._clock()

    def consecutive_failures(self, key: tuple[str, str]) -> int:
        return self._failures.get(key, 0)
