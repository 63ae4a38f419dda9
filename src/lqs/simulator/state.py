"""The simulator's memory: configuration, random generators, records, idempotency, rate windows,
registered webhooks and the callbacks being delivered.

One :class:`SimulatorState` lives on the app (``app.state.simulator``). It is only touched
from the server's event loop, and no method awaits, so no lock is needed.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, cast

from starlette.requests import Request

from lqs.simulator.callbacks import CallbackDispatcher
from lqs.simulator.config import SimulatorConfig
from lqs.simulator.faults import FaultPlan, draw_plan
from lqs.simulator.records import (
    HookDelivery,
    MessageRecord,
    RequestRecord,
    base64_text,
    text_or_none,
)
from lqs.simulator.registrations import WebhookRegistry

PROVIDERS = SimulatorConfig.served()


@dataclass(frozen=True)
class StoredResponse:
    """The first answer given for an idempotency key, replayed to later identical requests."""

    status: int
    body: bytes


@dataclass
class IdempotencyEntry:
    """An idempotency key's request fingerprint and, once answered, its response."""

    key: str
    fingerprint: str
    created_at: float
    response: StoredResponse | None = None


@dataclass(frozen=True)
class IdempotencyVerdict:
    """What to do with a request carrying an idempotency key.

    ``proceed`` (``entry`` is now claimed and in flight), ``replay`` (``entry.response``
    is the first answer), ``mismatch`` (same key, other payload) or ``in_flight``.
    """

    kind: Literal["proceed", "replay", "mismatch", "in_flight"]
    entry: IdempotencyEntry


class IdempotencyStore:
    """Idempotency keys seen in the last ``ttl`` seconds; only accepted requests are kept."""

    def __init__(self) -> None:
        self._entries: dict[str, IdempotencyEntry] = {}

    def begin(self, key: str, fingerprint: str, ttl: float) -> IdempotencyVerdict:
        """Look ``key`` up and, if it is new (or expired), claim it for this request."""
        now = time.time()
        entry = self._entries.get(key)
        if entry is not None and now - entry.created_at >= ttl:
            entry = None
        if entry is None:
            entry = IdempotencyEntry(key=key, fingerprint=fingerprint, created_at=now)
            self._entries[key] = entry
            return IdempotencyVerdict("proceed", entry)
        if entry.fingerprint != fingerprint:
            return IdempotencyVerdict("mismatch", entry)
        if entry.response is None:
            return IdempotencyVerdict("in_flight", entry)
        return IdempotencyVerdict("replay", entry)

    def complete(self, entry: IdempotencyEntry, response: StoredResponse) -> None:
        """Keep ``response`` as the answer for ``entry``'s key (no-op after a reset)."""
        if self._entries.get(entry.key) is entry:
            entry.response = response

    def release(self, entry: IdempotencyEntry) -> None:
        """Forget a claim whose request was not accepted, so the key can be used again."""
        if self._entries.get(entry.key) is entry:
            del self._entries[entry.key]

    def clear(self) -> None:
        """Forget every key."""
        self._entries.clear()


@dataclass(frozen=True)
class RateStatus:
    """One request's place in its rate-limit window."""

    limit: int
    remaining: int
    reset_seconds: int
    exceeded: bool


@dataclass
class RateWindow:
    """A fixed one-second window counting requests (Resend's limit is per second)."""

    window_start: float = 0.0
    count: int = 0

    def hit(self, limit: int) -> RateStatus:
        """Count one request and say whether it is over ``limit``."""
        now = time.time()
        start = math.floor(now)
        if start != self.window_start:
            self.window_start, self.count = start, 0
        self.count += 1
        reset = max(1, math.ceil(start + 1 - now))
        return RateStatus(
            limit=limit,
            remaining=max(0, limit - self.count),
            reset_seconds=reset,
            exceeded=self.count > limit,
        )


@dataclass
class SimulatorState:
    """Configuration plus everything recorded since the last reset."""

    config: SimulatorConfig
    messages: list[MessageRecord] = field(default_factory=list)
    requests: list[RequestRecord] = field(default_factory=list)
    hook_deliveries: list[HookDelivery] = field(default_factory=list)
    idempotency: IdempotencyStore = field(default_factory=IdempotencyStore)
    rate_windows: dict[str, RateWindow] = field(default_factory=dict)
    webhooks: WebhookRegistry = field(default_factory=WebhookRegistry)
    callbacks: CallbackDispatcher = field(init=False)
    callback_rng: random.Random = field(init=False)
    _rngs: dict[str, random.Random] = field(default_factory=dict)
    _scripts: dict[str, deque[str]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.callbacks = CallbackDispatcher(self.next_id)
        self.webhooks.load_config(self.config.callbacks.webhooks)
        self._restart_faults()

    def configure(self, config: SimulatorConfig) -> None:
        """Replace the configuration; generators are reseeded and fault scripts reloaded.

        The webhooks the old configuration registered are replaced by the new one's; those
        registered with ``POST /_sim/webhooks`` stay.
        """
        self.config = config
        self.webhooks.load_config(config.callbacks.webhooks)
        self._restart_faults()

    def reset(self) -> None:
        """Forget every record, idempotency key and rate window; reseed the generators.

        Callbacks still due are cancelled and their attempts forgotten; registered webhooks
        stay (they are set-up, not records).
        """
        self.messages.clear()
        self.requests.clear()
        self.hook_deliveries.clear()
        self.idempotency.clear()
        self.rate_windows.clear()
        self.callbacks.reset()
        self._restart_faults()

    def _restart_faults(self) -> None:
        seed = self.config.seed
        # A string seed is hashed deterministically, so each provider gets its own
        # repeatable sequence whatever the traffic to the others.
        self._rngs = {
            name: random.Random(None if seed is None else f"{seed}:{name}")  # noqa: S311
            for name in PROVIDERS
        }
        self._scripts = {name: deque(self.config.faults_for(name).script) for name in PROVIDERS}
        self.callback_rng = random.Random(None if seed is None else f"{seed}:callbacks")  # noqa: S311

    def next_id(self, prefix: str) -> str:
        """A new simulator id such as ``msg_000042`` (unique across kinds)."""
        return f"{prefix}_{next(self._ids):06d}"

    def plan(self, provider: str) -> FaultPlan:
        """Draw the fault plan of ``provider``'s next request."""
        script = self._scripts[provider]
        scripted = script.popleft() if script else None
        return draw_plan(self.config.faults_for(provider), self._rngs[provider], scripted)

    def rate_window(self, provider: str) -> RateWindow:
        """The rate-limit window of ``provider``."""
        return self.rate_windows.setdefault(provider, RateWindow())

    def record_request(self, provider: str, request: Request, body: bytes) -> RequestRecord:
        """Log a request on arrival; its status and outcome are filled in when answered."""
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        record = RequestRecord(
            id=self.next_id("req"),
            provider=provider,
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            headers=headers,
            body=text_or_none(body),
            body_base64=base64_text(body),
            received_at=datetime.now(UTC),
        )
        self.requests.append(record)
        return record

    def idempotency_counts(self) -> dict[str, int]:
        """How many accepted messages each idempotency key produced."""
        counts: dict[str, int] = {}
        for message in self.messages:
            if message.idempotency_key is not None:
                key = message.idempotency_key
                counts[key] = counts.get(key, 0) + 1
        return counts


def simulator_state(request: Request) -> SimulatorState:
    """The state of the app serving ``request``."""
    return cast(SimulatorState, request.app.state.simulator)
