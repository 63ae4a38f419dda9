"""Which clients a delivery webhook may belong to, remembered for a few seconds.

Every webhook request needs the webhook credentials of the client in its path (or of
every client configuring the provider, on the path without a client id): a transaction
of its own, as much work as storing the events. Each process keeps the answer for ``ttl``
seconds (``LQS_API_KEY_CACHE_SECONDS``, the same bound as API keys, at most 5; 0: no
cache), per (provider, client id), at most ``max_entries`` of them (least recently used
go first). A remembered answer is only trusted when it verifies the request: a request
that none of the remembered credentials verify is checked once more against a fresh
lookup (:mod:`lqs.api.webhooks`), so a new client or a rotated secret is honoured at
once, a miss is never remembered past that request, and a forged request costs one
lookup, as it did before. A secret replaced or removed stays accepted by this process
for at most ``ttl`` seconds.

Not :class:`lqs.api.key_cache.ApiKeyCache`: that one holds one principal per key digest;
this one holds lists of candidates per (provider, client).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from uuid import UUID

from lqs.api.key_cache import MAX_TTL
from lqs.db.clients import WebhookCandidate

Key = tuple[str, UUID | None]


class WebhookCandidateCache:
    """Lookups of webhook candidates, each answer kept ``ttl`` seconds (one process, one
    event loop)."""

    def __init__(
        self,
        ttl: float = MAX_TTL,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= ttl <= MAX_TTL:
            raise ValueError(f"ttl must be 0 to {MAX_TTL:g} seconds")
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._answers: OrderedDict[Key, tuple[float, list[WebhookCandidate]]] = OrderedDict()

    async def candidates(
        self,
        provider: str,
        client_id: UUID | None,
        look_up: Callable[[], Awaitable[list[WebhookCandidate]]],
        *,
        fresh: bool = False,
    ) -> tuple[list[WebhookCandidate], bool]:
        """The candidates and whether they were remembered (True) or just looked up.

        ``fresh``: look up even if remembered. ``look_up()``'s errors propagate and
        nothing is remembered then.
        """
        key = (provider, client_id)
        if self._ttl == 0:
            return await look_up(), False
        known = self._answers.get(key)
        if not fresh and known is not None and known[0] > self._clock():
            self._answers.move_to_end(key)
            return known[1], True
        found = await look_up()
        self._answers[key] = (self._clock() + self._ttl, found)
        self._answers.move_to_end(key)
        while len(self._answers) > self._max_entries:
            self._answers.popitem(last=False)
        return found, False

    def __len__(self) -> int:
        return len(self._answers)
