"""The dispatcher: send every pending communication once in effect, and record the truth.

A pipeline in one event loop:

1. **Claim** a batch of due communications with a lease, in a short transaction that
   also stores the claim's new batch requests and commits before any provider is called
   (:func:`lqs.db.dispatch.claim_due_in`, :func:`lqs.db.dispatch.store_claimed_batches`).
2. **Check again** what may have changed since the communication was written: the lead's
   consent (for messages to the lead) and the client's suppression list. A message that
   may no longer go becomes ``rejected`` with a compliance note and is not sent. Then the
   client's send windows and frequency caps (:mod:`lqs.domain.send_rules`, messages to
   leads only): a message outside its window, or over a deferring cap, is ``deferred``
   (released with ``next_attempt_at`` at the moment it may go, its retry count
   untouched, a ``deferred`` attempt saying why); over a rejecting cap it is ``rejected``.
   The caps' counts are read in one statement per claim (``recipient_sends``), under
   a lock per recipient until the claim commits; a send decided then counts at once.
3. **Send** with bounded concurrency over one pooled ``httpx.AsyncClient`` per provider,
   within each provider's rate and concurrency limits; email fails over to the client's
   secondary provider after consecutive transient failures of the primary.
4. **Record** outcomes in batches, each applied only while this worker still holds that
   attempt's lease (:func:`lqs.db.dispatch.record_acks`); every attempt is kept.

The next batch is claimed while the previous one is still being sent, so a slow provider
does not leave the other slots idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import httpx
import structlog
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError

from lqs.config import ProviderLimits
from lqs.db.clients import get_clients_by_id
from lqs.db.dispatch import (
    Ack,
    Attempt,
    ClaimedMessage,
    RecipientKey,
    StoredBatch,
    claim_due_in,
    load_batches,
    lock_recipients,
    next_due_in,
    recent_sends,
    record_acks,
    record_started_attempts,
    reserve_sends,
    store_claimed_batches,
)
from lqs.db.errors import is_transient
from lqs.domain.consent import consent_note
from lqs.domain.delivery import (
    AttemptDecision,
    DeliverySettings,
    DeliverySettingsError,
    NextStep,
    RetryPolicy,
    Verdict,
    after_attempt,
    parse_delivery_settings,
    provider_for,
)
from lqs.domain.notifications import normalise_recipient
from lqs.domain.send_rules import (
    CAP_PERIOD,
    Defer,
    Reject,
    SendRules,
    decide,
    recipient_zone,
)
from lqs.domain.text import describe_error
from lqs.domain.unsubscribe import UnsubscribeLinks
from lqs.providers.base import (
    AdapterOptions,
    BatchProvider,
    OutboundMessage,
    Provider,
    ProviderConfigError,
    SendResult,
)
from lqs.providers.registry import PROVIDERS, accepted_is_delivered, idempotent
from lqs.providers.sharded_client import ShardedAsyncClient
from lqs.worker.limits import Failover, ProviderLimiter

log = structlog.get_logger(__name__)


@dataclass
class DispatchStats:
    """What a drain did."""

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    rejected: int = 0
    lost_leases: int = 0

    settled: int = 0
    """Claimed but no longer pending: a delivery event had settled it (nothing sent)."""

    deferred: int = 0
    """Claimed outside its send window or over a deferring frequency cap: due later."""

    def add(self, step: NextStep) -> None:
        setattr(self, step.value, getattr(self, step.value) + 1)


@dataclass(frozen=True)
class DispatcherOptions:
    """How the dispatcher works; every field has a setting (``LQS_DISPATCH_*``)."""

    batch_size: int = 100
    concurrency: int = 32
    lease_seconds: float = 60.0
    timeout: float = 15.0
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    limits: Mapping[str, ProviderLimits] = field(default_factory=dict)
    failover_cooldown: float = 30.0
    allow_private_webhooks: bool = False
    ack_batch: int = 100
    ack_interval: float = 0.05
    settings_ttl: float = 10.0
    batches: bool = True
    """Send several first-attempt messages of one client in one request to providers with
    a batch API (:class:`~lqs.providers.base.BatchProvider`)."""
    unsubscribe: UnsubscribeLinks | None = None
    """Signs the List-Unsubscribe links of emails to leads; None: no such headers."""


@dataclass(frozen=True)
class _Route:
    provider: str
    settings: Any


_Batch = tuple[list[ClaimedMessage], _Route]
"""A new batch's members and where it goes."""


@dataclass
class _Plan:
    singles: list[tuple[ClaimedMessage, Ack | _Route]] = field(default_factory=list)
    batches: list[tuple[list[ClaimedMessage], _Route]] = field(default_factory=list)
    replays: dict[str, list[ClaimedMessage]] = field(default_factory=dict)


@dataclass(frozen=True)
class _ClientDelivery:
    settings: DeliverySettings | None
    error: str | None
    fetched_at: float
    rules: SendRules | None = None
    rules_error: str | None = None
    time_zone: str = "UTC"
    """The client's default time zone: the last resort for a lead's (send windows)."""


SEND_RULES_PROVIDER = "lqs"
"""The ``provider`` of a ``deferred`` attempt: LQS held the message back itself."""


_UTC_ZONE = ZoneInfo("UTC")


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _AckBuffer:
    """Collects outcomes and records them in batches (by size or after a short wait)."""

    def __init__(self, pool: AsyncConnectionPool, owner: str, size: int, interval: float):
        self._pool = pool
        self._owner = owner
        self._size = size
        self._interval = interval
        self._pending: list[Ack] = []
        self._flushing = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self.lost = 0

    @property
    def pending(self) -> int:
        """Outcomes not recorded yet."""
        return len(self._pending)

    async def add(self, ack: Ack) -> None:
        """Buffer ``ack``; never raises (a failed write keeps it buffered)."""
        self._pending.append(ack)
        if len(self._pending) >= self._size:
            await self.try_flush()
        elif self._timer is None or self._timer.done():
            self._timer = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self._interval)
        await self.try_flush()

    async def try_flush(self) -> None:
        """:meth:`flush`, logging a failure instead of raising: what was not recorded
        stays buffered for the next flush (the final one raises), and the leases keep
        another worker from acting on those rows meanwhile."""
        try:
            await self.flush()
        except Exception as exc:
            log.warning("dispatch_ack_flush_failed", pending=len(self._pending), error=str(exc))

    async def flush(self) -> None:
        """Record what is buffered; on failure it stays buffered and the error is raised."""
        async with self._flushing:
            batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                async with self._pool.connection() as conn:
                    held = await record_acks(conn, self._owner, batch)
            except BaseException:
                self._pending = batch + self._pending
                raise
            lost = [a.communication_id for a in batch if a.communication_id not in held]
            if lost:
                self.lost += len(lost)
                log.warning("dispatch_lease_lost", communications=[str(i) for i in lost])

    async def close(self) -> None:
        """Stop the timer and record what is buffered (raises if that fails; what was not
        recorded stays buffered for the next :meth:`flush`)."""
        if self._timer is not None and not self._timer.done():
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        await self.flush()


class Dispatcher:
    """Sends due communications; any number may run against one database.

    Use as an async context manager (it owns one ``httpx.AsyncClient`` per provider).
    """

    def __init__(
        self,
        pool: AsyncConnectionPool,
        options: DispatcherOptions | None = None,
        *,
        owner: str | None = None,
        rng: random.Random | None = None,
        providers: Mapping[str, Provider] | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        """``clock`` gives the time send windows and frequency caps are decided at (tests
        set it; the database's clock still decides what is due)."""
        self._pool = pool
        self._clock = clock
        self.options = options or DispatcherOptions()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._rng = rng or random.Random()  # noqa: S311 - backoff jitter, not a secret
        self._given_providers = dict(providers or {})
        self._providers: dict[str, Provider] = {}
        self._clients: list[httpx.AsyncClient] = []
        self._limiters: dict[str, ProviderLimiter] = {}
        self._failover = Failover(self.options.failover_cooldown)
        self._settings: dict[UUID, _ClientDelivery] = {}
        # Outlives each drain: outcomes a lost connection kept from being recorded are
        # recorded by the next drain (or at shutdown), while this worker still holds
        # their leases.
        self._acks = _AckBuffer(pool, self.owner, self.options.ack_batch, self.options.ack_interval)

    @property
    def unrecorded(self) -> int:
        """Outcomes received from providers and not recorded yet."""
        return self._acks.pending

    async def record_outcomes(self) -> None:
        """Record every buffered outcome now.

        Raises:
            Exception: the database refused or was unreachable; they stay buffered.
        """
        await self._acks.close()

    async def __aenter__(self) -> Dispatcher:
        timeout = httpx.Timeout(self.options.timeout)

        # One TLS context per trust_env setting, shared by every inner client: each one
        # built its own otherwise, loading the CA bundle 85 times (1.6 s of CPU at start).
        tls = {env: httpx.create_ssl_context(trust_env=env) for env in (True, False)}

        def client(*, trust_env: bool = True) -> httpx.AsyncClient:
            def settings() -> dict[str, Any]:
                # No provider needs cookies; a jar that refuses them keeps one tenant's
                # cookies from ever reaching another.
                return {
                    "timeout": timeout,
                    "follow_redirects": False,
                    "cookies": CookieJar(DefaultCookiePolicy(allowed_domains=[])),
                    "trust_env": trust_env,
                    "verify": tls[trust_env],
                }

            def shard(connections: int) -> httpx.AsyncClient:
                return httpx.AsyncClient(
                    limits=httpx.Limits(
                        max_connections=connections, max_keepalive_connections=connections
                    ),
                    **settings(),
                )

            made = ShardedAsyncClient(shard, max_connections=self.options.concurrency, **settings())
            self._clients.append(made)
            return made

        adapter_options = AdapterOptions(
            timeout=self.options.timeout, allow_private=self.options.allow_private_webhooks
        )
        built = {
            name: kind.build(client, adapter_options)
            for name, kind in PROVIDERS.items()
            if name not in self._given_providers
        }
        self._providers = {**built, **self._given_providers}
        for name in self._providers:
            self._limiters[name] = ProviderLimiter(
                self.options.limits.get(name, ProviderLimits(concurrency=self.options.concurrency))
            )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for made in self._clients:
            await made.aclose()
        self._clients.clear()

    # ------------------------------------------------------------------ the pipeline

    async def drain(
        self,
        stop: asyncio.Event | None = None,
        *,
        settle: float = 0.0,
        wake: asyncio.Event | None = None,
        progress: Callable[[], None] | None = None,
    ) -> DispatchStats:
        """Send everything that is due, and whatever falls due within ``settle`` seconds
        of the queue otherwise running dry (retries with short backoffs, expired leases).

        ``wake`` is set by the daemon when new communications are announced (NOTIFY):
        while requests are in flight, the drain then claims at once instead of waiting for
        one of them to finish, so a new message never waits for a slow provider's answer.

        ``progress`` is called at every turn of the loop (a claim, an answer, a wake-up).

        Returns when nothing more is due (or ``stop`` is set), after recording every
        outcome.
        """
        stats = DispatchStats()
        acks = self._acks
        slots = asyncio.Semaphore(self.options.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        lost_before = acks.lost

        async def deliver(message: ClaimedMessage, route: Ack | _Route) -> None:
            await deliver_many([message], self._attempt_one(message, route))

        async def deliver_many(
            members: list[ClaimedMessage], sending: Awaitable[list[Ack]]
        ) -> None:
            try:
                async with slots:
                    done = await sending
            except Exception as exc:
                done = self._unexpected(members, exc)
            for ack in done:
                stats.add(ack.step)
                await acks.add(ack)

        # What an earlier drain could not record goes first (raises while the database
        # is still unreachable, before anything new is claimed).
        await acks.flush()
        try:
            while stop is None or not stop.is_set():
                if progress is not None:
                    progress()
                if len(tasks) >= self.options.concurrency:
                    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                    continue
                if wake is not None:
                    wake.clear()
                claimed, plan, batches = await self._claim()
                if claimed:
                    stats.claimed += len(claimed)
                    jobs = [
                        *(deliver(m, route) for m, route in plan.singles),
                        *(deliver_many(b[1][0], self._send_new_batch(*b)) for b in batches),
                        *(deliver_many(ms, self._replay(k, ms)) for k, ms in plan.replays.items()),
                    ]
                    for job in jobs:
                        task = asyncio.create_task(job)
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                    continue
                if tasks:
                    await _first_done_or_woken(tasks, wake)
                    continue
                await acks.try_flush()
                async with self._pool.connection() as conn:
                    wait = await next_due_in(conn)
                if wait is None or wait > settle:
                    break
                await _sleep_or_stop(wait + 0.01, stop)
        except asyncio.CancelledError:
            # Cancelled (the process is going down hard): abandon the requests; their
            # leases expire and another worker retries them.
            for task in tasks:
                task.cancel()
            raise
        finally:
            # Whatever ended the loop (stop, or a lost connection), requests already made
            # are answered and their outcomes buffered before this returns or raises.
            if tasks:
                done = await asyncio.gather(*tasks, return_exceptions=True)
                for failure in done:
                    if isinstance(failure, BaseException):
                        log.error("dispatch_task_failed", error=repr(failure))
        await acks.close()
        stats.lost_leases = acks.lost - lost_before
        return stats

    async def _load_settings(self, client_ids: set[UUID]) -> None:
        now = time.monotonic()
        stale = {
            cid
            for cid in client_ids
            if cid not in self._settings
            or now - self._settings[cid].fetched_at > self.options.settings_ttl
        }
        if not stale:
            return
        async with self._pool.connection() as conn:
            clients = await get_clients_by_id(conn, stale)
        for cid in stale:
            client = clients.get(cid)
            stored = client.settings if client else {}
            raw = stored.get("delivery")
            try:
                settings = parse_delivery_settings(raw if isinstance(raw, Mapping) else None)
                delivery = _ClientDelivery(settings, None, now)
            except DeliverySettingsError as exc:
                delivery = _ClientDelivery(None, f"invalid delivery settings: {exc}", now)
            self._settings[cid] = _with_send_rules(delivery, stored)

    async def _hold_back(
        self, conn: AsyncConnection, claimed: list[ClaimedMessage]
    ) -> dict[UUID, Ack]:
        """The acks of the claimed messages to leads that their client's send windows
        and frequency caps keep from going now (deferred or rejected), by id.

        Messages the consent or suppression check ends, settled ones and batch replays
        are left to :meth:`_route` and :meth:`_replay`. The caps' counts are read in one
        statement under a lock per recipient held until the claim commits, and a send
        decided here is reserved at once (``recipient_sends``): it counts for the next
        message to the same recipient, in this claim or in another worker's.
        """
        now = self._clock()
        held: dict[UUID, Ack] = {}
        ruled = []
        for message in claimed:
            if (
                not message.to_lead
                or message.batch_key is not None
                or message.status != "pending"
                or _still_allowed(message) is not None
            ):
                continue
            delivery = self._settings.get(message.client_id)
            if delivery is None:
                continue
            if delivery.rules is None:
                held[message.communication_id] = self._failed(
                    message, delivery.rules_error or "invalid send rules"
                )
                continue
            window, cap = (
                delivery.rules.window(message.channel),
                delivery.rules.cap(message.channel),
            )
            if window is not None or cap is not None:
                ruled.append((message, delivery, window, cap))
        keys: dict[UUID, RecipientKey] = {
            m.communication_id: (
                m.client_id,
                m.channel,
                normalise_recipient(m.channel, m.recipient),
            )
            for m, _, _, cap in ruled
            if cap is not None
        }
        recent: dict[RecipientKey, list[datetime]] = {}
        if keys:
            await lock_recipients(conn, keys.values())
            recent = await recent_sends(conn, keys.values(), now - CAP_PERIOD, excluding=list(keys))
        reserved: list[tuple[UUID, RecipientKey]] = []
        for message, delivery, window, cap in ruled:
            key = keys.get(message.communication_id)
            # Only a window needs the zone (reading it from a phone number costs ~50 µs).
            zone = (
                recipient_zone(
                    message.lead_time_zone, message.lead_phone, message.lead_country,
                    delivery.time_zone,
                )
                if window is not None
                else _UTC_ZONE
            )  # fmt: skip
            decision = decide(
                message.channel, window, zone, now, recent.get(key, []) if key else [], cap
            )
            if isinstance(decision, Defer):
                held[message.communication_id] = _deferred(message, decision, now)
            elif isinstance(decision, Reject):
                held[message.communication_id] = Ack(
                    message.communication_id,
                    message.attempt,
                    NextStep.REJECTED,
                    message.retry_count,
                    compliance_notes=decision.reason,
                )
            elif key is not None:
                recent.setdefault(key, []).append(now)
                reserved.append((message.communication_id, key))
        await reserve_sends(conn, reserved, now)
        return held

    # ------------------------------------------------------------------ one message

    def _route(self, message: ClaimedMessage) -> Ack | _Route:
        """Where ``message`` goes now, or the ack that ends it without a request."""
        if message.status != "pending":
            # A delivery event settled it while a retry was waiting: nothing to send.
            return Ack(
                message.communication_id, message.attempt, NextStep.SETTLED, message.retry_count
            )
        rejection = _still_allowed(message)
        if rejection is not None:
            consent = _consent_in_force(message)
            return Ack(
                message.communication_id,
                message.attempt,
                NextStep.REJECTED,
                message.retry_count,
                compliance_notes=rejection if consent is None else f"{rejection}; {consent[1]}",
                consent_status=None if consent is None else consent[0],
            )
        delivery = self._settings.get(message.client_id)
        if delivery is None or delivery.settings is None:
            reason = delivery.error if delivery else "client not found"
            return self._failed(message, reason or "no delivery settings")
        settings = delivery.settings
        primary = settings.email.primary
        primary_settings = PROVIDERS[primary].settings_of(settings)
        primary_key = (primary, str(getattr(primary_settings, "base_url", "")))
        failing = message.channel == "email" and self._failover.failing(
            primary_key, settings.email.failover_after
        )
        name = provider_for(message.channel, settings, primary_failing=failing)
        if name is None:
            return self._failed(message, f"no provider is configured for {message.channel}")
        if message.channel == "push":
            if message.push_endpoint is None:
                return self._failed(message, "push subscription not found")
            if message.push_gone:
                return self._failed(message, "push subscription is gone (the service said 404/410)")
        return _Route(name, PROVIDERS[name].settings_of(settings))

    async def _attempt_one(self, message: ClaimedMessage, route: Ack | _Route) -> list[Ack]:
        return [await self._attempt(message, route)]

    def _unexpected(self, members: list[ClaimedMessage], exc: Exception) -> list[Ack]:
        """Acks for messages whose sending raised (adapters never should): a lost database
        connection leaves them leased, to be retried when the lease expires; anything
        else is a defect that would repeat at every retry, so they fail, with the error,
        instead of being claimed forever."""
        if is_transient(exc):
            log.warning("dispatch_send_interrupted", messages=len(members), error=str(exc))
            return []
        log.exception("dispatch_send_failed_unexpectedly", messages=len(members))
        reason = f"internal error while sending: {describe_error(exc)}"
        return [self._failed(m, reason) for m in members]

    async def _attempt(self, message: ClaimedMessage, route: Ack | _Route | None = None) -> Ack:
        if route is None:
            route = self._route(message)
        if isinstance(route, Ack):
            return route
        outbound = _outbound(message, self.options.unsubscribe)
        started = datetime.now(UTC)
        try:
            async with self._limiters[route.provider].slot():
                result = await self._providers[route.provider].send(route.settings, outbound)
        except ProviderConfigError as exc:
            return self._failed(message, f"{route.provider}: {exc}")
        return self._after(message, route, result, started)

    def _after(
        self, message: ClaimedMessage, route: _Route, result: SendResult, started: datetime
    ) -> Ack:
        finished = datetime.now(UTC)
        if result.rate_limited:
            self._limiters[route.provider].pause(
                result.retry_after if result.retry_after is not None else 1.0
            )
        if message.channel == "email":
            key = (route.provider, str(getattr(route.settings, "base_url", "")))
            self._failover.record(key, result.verdict is Verdict.TRANSIENT)
        decision = after_attempt(
            result.verdict,
            retry_count=message.retry_count,
            max_retries=message.max_retries,
            age=message.age_seconds + (finished - started).total_seconds(),
            error_message=result.error_message,
            retry_after=result.retry_after,
            policy=self.options.policy,
            rng=self._rng,
        )
        return _ack(message, route.provider, result, decision, started, finished)

    # ------------------------------------------------------------------ batches

    def _batch_provider(self, name: str) -> BatchProvider | None:
        provider = self._providers.get(name)
        return provider if isinstance(provider, BatchProvider) else None

    def _plan(self, claimed: list[ClaimedMessage]) -> _Plan:
        """Route a claim: single sends, new batches, and batch replays.

        Each message is routed once (routing consults the failover state). A batch holds
        first attempts only (a message tried alone before may already have been accepted
        under its own key), with a subject and content, of one client, to one provider
        with a batch API, at least two and at most the provider's ``max_batch``.
        """
        plan = _Plan()
        batchable: dict[tuple[UUID, str], list[tuple[ClaimedMessage, _Route]]] = {}
        for message in claimed:
            if message.batch_key is not None:
                plan.replays.setdefault(message.batch_key, []).append(message)
                continue
            route = self._route(message)
            if (
                self.options.batches
                and isinstance(route, _Route)
                and self._batch_provider(route.provider) is not None
                and message.attempt == 1
                and message.subject is not None
                and message.content is not None
            ):
                key = (message.client_id, route.provider)
                batchable.setdefault(key, []).append((message, route))
            else:
                plan.singles.append((message, route))
        for (_, name), group in batchable.items():
            if len(group) < 2:
                plan.singles.extend(group)
                continue
            provider = self._batch_provider(name)
            assert provider is not None
            for i in range(0, len(group), provider.max_batch):
                chunk = group[i : i + provider.max_batch]
                plan.batches.append(([m for m, _ in chunk], chunk[0][1]))
        return plan

    async def _claim(
        self,
    ) -> tuple[list[ClaimedMessage], _Plan, list[tuple[StoredBatch | list[Ack], _Batch]]]:
        """Claim due messages, route them, and store their new batch requests, all in one
        transaction: when it commits, every batch is recorded before it can be sent, and
        a crash before the commit leaves the rows unclaimed. Single sends to providers
        without idempotency keys are recorded as started in the same transaction.
        Returns the claim, its plan, and each new batch's request (or the acks failing
        its members) with the batch."""
        async with self._pool.connection() as conn, conn.transaction():
            claimed = await claim_due_in(
                conn, self.owner, self.options.batch_size, self.options.lease_seconds
            )
            if not claimed:
                return [], _Plan(), []
            await self._load_settings({m.client_id for m in claimed})
            held = await self._hold_back(conn, claimed)
            plan = self._plan([m for m in claimed if m.communication_id not in held])
            plan.singles += [
                (m, held[m.communication_id]) for m in claimed if m.communication_id in held
            ]
            stored: list[tuple[StoredBatch, UUID]] = []
            batches: list[tuple[StoredBatch | list[Ack], _Batch]] = []
            for members, route in plan.batches:
                built = self._batch(members, route)
                if isinstance(built, StoredBatch):
                    stored.append((built, members[0].client_id))
                batches.append((built, (members, route)))
            await store_claimed_batches(conn, stored)
            await record_started_attempts(
                conn,
                [
                    (m.communication_id, m.client_id, m.attempt, route.provider)
                    for m, route in plan.singles
                    if isinstance(route, _Route) and not idempotent(route.provider)
                ],
            )
        return claimed, plan, batches

    async def _send_new_batch(self, built: StoredBatch | list[Ack], batch: _Batch) -> list[Ack]:
        if isinstance(built, StoredBatch):
            return await self._post_batch(built, *batch)
        return built

    def _batch(self, members: list[ClaimedMessage], route: _Route) -> StoredBatch | list[Ack]:
        """The batch request for ``members`` (keyed by their ids), or their failure acks."""
        provider = self._batch_provider(route.provider)
        assert provider is not None
        outbound = [_outbound(m, self.options.unsubscribe) for m in members]
        try:
            body = provider.batch_body(route.settings, outbound)
        except ProviderConfigError as exc:
            return [self._failed(m, f"{route.provider}: {exc}") for m in members]
        ids = sorted(str(m.communication_id) for m in members)
        key = "batch-" + hashlib.sha256(",".join(ids).encode()).hexdigest()[:48]
        return StoredBatch(key, route.provider, body, [m.communication_id for m in members])

    async def _replay(self, key: str, members: list[ClaimedMessage]) -> list[Ack]:
        """Send a stored batch again, verbatim, for the members claimed now.

        No consent check: the batch went to the provider as it is at its first attempt,
        and only the same request under the same key recovers its answer without sending
        twice; a changed request would be refused (409) or sent again.
        """
        async with self._pool.connection() as conn:
            stored = (await load_batches(conn, [key])).get(key)
        delivery = self._settings.get(members[0].client_id)
        settings = delivery.settings if delivery else None
        kind = PROVIDERS.get(stored.provider) if stored is not None else None
        provider_settings = (
            kind.settings_of(settings) if kind is not None and settings is not None else None
        )
        if stored is None or provider_settings is None:
            reason = "the batch this message was sent in cannot be replayed: " + (
                "it is not stored"
                if stored is None
                else f"{stored.provider} is no longer configured"
            )
            return [self._failed(m, reason) for m in members]
        return await self._post_batch(stored, members, _Route(stored.provider, provider_settings))

    async def _post_batch(
        self, batch: StoredBatch, members: list[ClaimedMessage], route: _Route
    ) -> list[Ack]:
        provider = self._batch_provider(route.provider)
        if provider is None:
            reason = f"{route.provider} cannot send the batch this message was sent in"
            return [self._failed(m, reason) for m in members]
        started = datetime.now(UTC)
        try:
            async with self._limiters[route.provider].slot():
                results = await provider.send_batch(
                    route.settings, batch.body, len(batch.members), batch.batch_key
                )
        except ProviderConfigError as exc:
            return [self._failed(m, f"{route.provider}: {exc}") for m in members]
        by_id = dict(zip(batch.members, results, strict=True))
        return [self._after(m, route, by_id[m.communication_id], started) for m in members]

    @staticmethod
    def _failed(message: ClaimedMessage, reason: str) -> Ack:
        return Ack(
            message.communication_id,
            message.attempt,
            NextStep.FAILED,
            message.retry_count,
            error_message=reason,
        )


def _still_allowed(message: ClaimedMessage) -> str | None:
    """The compliance note if the message may no longer be sent, else None.

    When an earlier attempt was started and never answered, the provider may have
    accepted it: the note then says "not sent again" and names that attempt, rather than
    claiming nothing was sent.
    """
    if message.to_lead and message.lead_consent != "granted":
        reason = f"the lead's consent is now {message.lead_consent or 'unknown'}"
    elif message.suppressed:
        reason = f"the recipient is on the client's {message.channel} suppression list"
    else:
        return None
    if message.in_doubt is not None:
        return (
            f"not sent again: {reason} (checked again before sending); attempt "
            f"{message.in_doubt} was started but its answer was never recorded, so the "
            "provider may have accepted it"
        )
    return f"not sent: {reason} (checked again before sending)"


def _consent_in_force(message: ClaimedMessage) -> tuple[str, str] | None:
    """For a message to the lead: the lead's consent now, and the compliance note naming
    the consent history entry it rests on (:func:`~lqs.domain.consent.consent_note`)."""
    if not message.to_lead:
        return None
    return message.lead_consent or "unknown", consent_note(message.relied_entry)


def _with_send_rules(delivery: _ClientDelivery, stored: Mapping[str, Any]) -> _ClientDelivery:
    """``delivery`` with the client's send rules and default zone from its settings."""
    zone = stored.get("time_zone")
    zone = zone if isinstance(zone, str) else "UTC"
    try:
        rules = SendRules.model_validate(stored)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        return replace(delivery, rules_error=f"invalid send rules: {problems}", time_zone=zone)
    return replace(delivery, rules=rules, time_zone=zone)


def _deferred(message: ClaimedMessage, decision: Defer, now: datetime) -> Ack:
    return Ack(
        message.communication_id,
        message.attempt,
        NextStep.DEFERRED,
        message.retry_count,
        defer_until=decision.until,
        attempt=Attempt(
            provider=SEND_RULES_PROVIDER,
            started_at=now,
            finished_at=now,
            http_status=None,
            error_code=decision.rule,
            error_message=decision.reason,
            outcome="deferred",
        ),
    )


def _outbound(message: ClaimedMessage, links: UnsubscribeLinks | None) -> OutboundMessage:
    headers: Mapping[str, str] = {}
    if links is not None and message.channel == "email" and message.to_lead:
        token = links.token(
            client_id=message.client_id,
            lead_id=message.lead_id,
            communication_id=message.communication_id,
            channel=message.channel,
            recipient=message.recipient,
            created_at=message.created_at,
        )
        headers = links.headers(token)
    metadata = {"lead_id": str(message.lead_id), "client_id": str(message.client_id)}
    if message.campaign_id:
        metadata["campaign_id"] = message.campaign_id
    recipient = message.recipient
    if message.channel == "push":
        assert message.push_endpoint is not None
        recipient = message.push_endpoint
        metadata["p256dh"] = message.push_p256dh or ""
        metadata["auth"] = message.push_auth or ""
        metadata["subscription_id"] = message.recipient
    return OutboundMessage(
        communication_id=message.communication_id,
        client_id=message.client_id,
        lead_id=message.lead_id,
        channel=message.channel,
        recipient=recipient,
        subject=message.subject,
        content=message.content,
        headers=headers,
        metadata=metadata,
    )


def _reference(result: SendResult) -> Any:
    if result.response is not None:
        return result.response
    return {"http_status": result.http_status, "message_id": result.external_id}


def _ack(
    message: ClaimedMessage,
    provider: str,
    result: SendResult,
    decision: AttemptDecision,
    started: datetime,
    finished: datetime,
) -> Ack:
    attempt = Attempt(
        provider=provider,
        started_at=started,
        finished_at=finished,
        http_status=result.http_status,
        error_code=result.error_code,
        error_message=result.error_message,
        outcome=result.verdict.value,
    )
    step = decision.step
    consent = _consent_in_force(message)
    return Ack(
        message.communication_id,
        message.attempt,
        step,
        decision.retry_count,
        compliance_notes=None if consent is None else consent[1],
        consent_status=None if consent is None else consent[0],
        provider=provider,
        external_id=result.external_id if step is NextStep.SENT else None,
        external_reference=_reference(result) if step is NextStep.SENT else None,
        error_message=decision.error_message,
        delay=decision.delay,
        sent_at=finished if step is NextStep.SENT else None,
        delivered=step is NextStep.SENT and accepted_is_delivered(provider),
        attempt=attempt,
        push_gone=result.recipient_gone and message.channel == "push",
        client_id=message.client_id,
        counted_as=(
            (message.channel, normalise_recipient(message.channel, message.recipient))
            if step is NextStep.SENT and message.to_lead
            else None
        ),
    )


async def _first_done_or_woken(tasks: set[asyncio.Task[None]], wake: asyncio.Event | None) -> None:
    """Wait until one of ``tasks`` finishes or ``wake`` is set."""
    if wake is None:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        return
    woken = asyncio.ensure_future(wake.wait())
    try:
        await asyncio.wait({*tasks, woken}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        woken.cancel()


async def _sleep_or_stop(seconds: float, stop: asyncio.Event | None) -> None:
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
