"""Who each API key speaks for, remembered for a few seconds.

Every lead intake request names its client by its API key. Looking the key up is a
transaction of its own (a pooled connection, a join of ``api_keys`` and ``clients``), as
much work as the insert it guards; so each process keeps the answer for ``ttl`` seconds
(``LQS_API_KEY_CACHE_SECONDS``, at most 5; 0: no cache). A key revoked from elsewhere (the
CLI, another API process, SQL) is refused by this process at most ``ttl`` seconds later; a
key revoked through this process's tenant API or dashboard is refused at once (the handler
calls :meth:`ApiKeyCache.forget`). A client's settings changed meanwhile reach intake as
late. Unknown keys are remembered too, so that a flood of made-up keys costs one lookup
each, and the cache holds at most ``max_keys`` keys (the least recently used go first).
Keys are held by their SHA-256 digest, as the database holds them, never in plain text.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from lqs.db.clients import ApiPrincipal, hash_api_key

MAX_TTL = 5.0
"""The longest a revoked key may still be accepted by a process that did not revoke it."""


class ApiKeyCache:
    """Lookups of API keys, each answer kept ``ttl`` seconds (one process, one event loop)."""

    def __init__(
        self,
        ttl: float = MAX_TTL,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= ttl <= MAX_TTL:
            raise ValueError(f"ttl must be 0 to {MAX_TTL:g} seconds")
        if max_keys < 1:
            raise ValueError("max_keys must be positive")
        self._ttl = ttl
        self._max_keys = max_keys
        self._clock = clock
        self._answers: OrderedDict[bytes, tuple[float, ApiPrincipal | None]] = OrderedDict()

    async def principal(
        self, key: str, look_up: Callable[[], Awaitable[ApiPrincipal | None]]
    ) -> ApiPrincipal | None:
        """The principal for ``key``: remembered if looked up less than ``ttl`` ago, else
        ``look_up()`` (raising what it raises, remembering nothing)."""
        if self._ttl == 0:
            return await look_up()
        digest = hash_api_key(key)
        now = self._clock()
        known = self._answers.get(digest)
        if known is not None and known[0] > now:
            self._answers.move_to_end(digest)
            return known[1]
        found = await look_up()
        self._answers[digest] = (self._clock() + self._ttl, found)
        self._answers.move_to_end(digest)
        while len(self._answers) > self._max_keys:
            self._answers.popitem(last=False)
        return found

    def forget(self) -> None:
        """Forget every answer (a key was revoked here: the next request looks it up)."""
        self._answers.clear()

    def __len__(self) -> int:
        return len(self._answers)
