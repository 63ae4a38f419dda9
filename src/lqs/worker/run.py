"""The worker's run loops: drain once (the seed's every-minute cron) or keep running.

One process runs the lead processor and the dispatcher side by side. The daemon LISTENs
for new leads and for newly pending communications and wakes at once; it also polls every
``poll_interval`` seconds in case a notification was missed (NOTIFY is not durable), and
the dispatcher wakes when the next retry falls due. Both stop after their current batch
when ``stop`` is set (SIGTERM, SIGINT); the dispatcher first waits for the requests it
has made and records their outcomes.

The daemon heals: each loop runs under a supervisor that, when the database goes away
(a terminated connection, a restart or failover, a cancelled statement), logs, backs off
(exponentially, with jitter, capped), reconnects and resumes. Nothing is lost meanwhile:
a batch of leads rolls back and is claimed again, and the dispatcher keeps the outcomes it
could not record until it can. Only ``stop`` ends the daemon. Every few seconds it also
writes its heartbeat (``worker_heartbeats``), which ``/readyz`` reads, but only while
each loop keeps turning: a loop stuck for ``stall_after`` seconds stops the beats. The
same housekeeping loop deletes expired Idempotency-Key records, and the frequency caps'
counts older than 24 h, after its first beat and every ``purge_interval`` seconds after
that. A third loop recounts the statistics rollup's
changed hours every ``stats_interval`` seconds (:func:`refresh_stats`); ``once`` does it
after draining the queues. A fourth applies the clients' retention settings
(:func:`lqs.db.retention.run_retention`) when the worker starts and every
``retention_interval`` seconds (a day) after that; ``once`` does not. A fifth, ``events``,
applies the delivery events the webhooks stored (:mod:`lqs.worker.events`), woken by their
NOTIFY and polling like the queues; ``once`` drains them before and after the queues.

Everything the worker takes from the settings arrives in one :class:`WorkerConfig`, built
by :func:`lqs.cli.compose.worker_config`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime

import psycopg
import structlog
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from lqs.db.communications import COMMUNICATIONS_PENDING_CHANNEL
from lqs.db.connection import connect_async, transaction_pooled
from lqs.db.dispatch import next_due_in, purge_recipient_sends
from lqs.db.errors import DatabaseUnavailable, is_transient
from lqs.db.events import EVENTS_PENDING_CHANNEL
from lqs.db.heartbeats import record_heartbeat, record_stopped
from lqs.db.idempotency import purge_expired_idempotency_keys
from lqs.db.leads import LEADS_QUEUED_CHANNEL
from lqs.db.pool import open_pool
from lqs.db.retention import run_retention
from lqs.db.stats_rollup import REFRESH_BATCH, refresh_rollup
from lqs.domain.send_rules import CAP_PERIOD
from lqs.worker.dispatcher import Dispatcher, DispatcherOptions, DispatchStats
from lqs.worker.events import drain_events
from lqs.worker.processor import LeadProcessor

log = structlog.get_logger(__name__)

HEARTBEAT_INTERVAL = 5.0
"""Seconds between a worker's heartbeats."""

PURGE_INTERVAL = 3_600.0
"""Seconds between two purges of expired Idempotency-Key records."""

RETENTION_INTERVAL = 86_400.0
"""Seconds between two turns of retention (docs/COMPLIANCE.md)."""
STATS_INTERVAL = 10.0
"""Seconds between two refreshes of the statistics rollup (``GET /v1/stats``): how long a
changed hour is counted live before it is read from the rollup again."""

STATS_CHECKOUT_TIMEOUT = 5.0
"""Seconds the statistics refresh waits for a pooled connection before skipping a turn."""

STALL_AFTER = 120.0
"""Seconds a loop may go without a turn before the worker stops beating: longer than any
bounded step (a provider timeout, a render's deadline, a backoff)."""


@dataclass(frozen=True)
class WorkerConfig:
    """Everything the worker takes from the settings; built in one place,
    :func:`lqs.cli.compose.worker_config` (tests: ``tests/configs.py``)."""

    batch_size: int
    """Leads per processor batch (LQS_WORKER_BATCH_SIZE)."""
    in_flight: int
    """Batches processed at once, each in its own transaction (LQS_WORKER_IN_FLIGHT)."""
    park_after: int
    """Failed processing attempts after which a lead is parked (LQS_WORKER_PARK_AFTER)."""
    poll_interval: float
    """Seconds between polls when no NOTIFY arrives (LQS_WORKER_POLL_INTERVAL)."""
    settle: float
    """With ``once``: also wait for retries due within this many seconds."""
    shutdown_grace: float
    """Seconds a stopping worker keeps trying to record the outcomes it holds."""
    pool_min_size: int
    pool_max_size: int
    """At least ``in_flight`` + 4: the processor's batches, the dispatcher, the event applier,
    the beat."""
    connect_timeout: int
    direct_url: str | None
    """Where the daemon LISTENs (LQS_DIRECT_DATABASE_URL); see :func:`listen_url`."""
    dispatcher: DispatcherOptions


class Progress:
    """When each loop last turned: the heartbeat is only written while every loop does,
    so a process whose loop is stuck looks dead to ``/readyz`` and its orchestrator."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def touch(self, loop: str) -> None:
        self._last[loop] = time.monotonic()

    def stalled(self, limit: float) -> list[str]:
        """The loops that have not turned for ``limit`` seconds."""
        now = time.monotonic()
        return sorted(name for name, at in self._last.items() if now - at > limit)


class Backoff:
    """Delays between reconnection attempts: exponential from ``base`` up to ``cap``
    seconds, each drawn uniformly from its upper half (jitter without ever retrying at
    once), reset after a stretch of health."""

    def __init__(
        self, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None
    ) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret

    def next_delay(self) -> float:
        """The delay before the next attempt; counts a failure."""
        ceiling = min(self.cap, self.base * 2.0 ** min(self.failures, 32))
        self.failures += 1
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self.failures = 0


async def supervise(
    name: str,
    body: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    *,
    backoff: Backoff | None = None,
    healthy_after: float = 30.0,
    progress: Progress | None = None,
) -> int:
    """Run ``body`` until ``stop`` is set, running it again after it fails.

    A transient database error (:func:`lqs.db.errors.is_transient`) is logged as a
    warning, anything else with its traceback; either way the next run waits for the
    backoff's delay (or ``stop``). A run that lasted ``healthy_after`` seconds resets the
    backoff. Returns how many times ``body`` failed.
    """
    backoff = backoff or Backoff()
    progress = progress or Progress()
    failures = 0
    while not stop.is_set():
        started = time.monotonic()
        progress.touch(name)
        try:
            await body()
        except Exception as exc:
            failures += 1
            if time.monotonic() - started >= healthy_after:
                backoff.reset()
            delay = backoff.next_delay()
            if is_transient(exc):
                log.warning(
                    "worker_loop_interrupted",
                    loop=name,
                    error=f"{type(exc).__name__}: {exc}".strip(),
                    retry_in=round(delay, 2),
                )
            else:
                log.exception("worker_loop_failed", loop=name, retry_in=round(delay, 2))
            progress.touch(name)  # waiting on purpose is not a stall
            await _sleep_or_stop(delay, stop)
            continue
        if not stop.is_set():
            # A loop only returns when stopped; returning early is a bug, not a reason to
            # spin. Treat it as a failure.
            failures += 1
            await _sleep_or_stop(backoff.next_delay(), stop)
    return failures


async def _sleep_or_stop(seconds: float, stop: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def _notified(listener: psycopg.AsyncConnection, wait_seconds: float) -> None:
    async for _ in listener.notifies(timeout=wait_seconds, stop_after=1):
        pass


async def _wait_for_work(
    listener: psycopg.AsyncConnection, wait_seconds: float, stop: asyncio.Event
) -> None:
    waits = {
        asyncio.create_task(_notified(listener, wait_seconds)),
        asyncio.create_task(stop.wait()),
    }
    done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for task in done:
        task.result()  # the listening connection's error, if it failed


@dataclass(frozen=True)
class WorkerTotals:
    """What a worker run did: leads processed, and what the dispatcher did."""

    leads: int
    dispatch: DispatchStats
    interruptions: int = 0
    """Times a loop lost the database (or failed) and resumed after a backoff."""
    events: int = 0
    """Delivery events applied."""


@contextlib.asynccontextmanager
async def _listening(
    listen_url: str | None, channel: str
) -> AsyncIterator[psycopg.AsyncConnection | None]:
    """A connection LISTENing on ``channel``; None without a URL to listen on (polling)."""
    if listen_url is None:
        yield None
        return
    # Never through a transaction pooler (see run_worker): prepared statements are fine.
    listener = await connect_async(listen_url, autocommit=True, pooled=False)
    async with listener:
        await listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        yield listener


async def _process_forever(
    listen_url: str | None,
    processor: LeadProcessor,
    poll_interval: float,
    stop: asyncio.Event,
    totals: list[int],
    progress: Progress,
) -> None:
    def turned() -> None:
        progress.touch("processor")

    # LISTEN first, then drain: a lead queued while the listener was down is found by
    # the drain, and one queued after it by the notification.
    async with _listening(listen_url, LEADS_QUEUED_CHANNEL) as listener:
        while not stop.is_set():
            turned()
            totals[0] += await processor.drain(stop, progress=turned)
            if stop.is_set():
                break
            if listener is None:
                await _sleep_or_stop(poll_interval, stop)
            else:
                await _wait_for_work(listener, poll_interval, stop)


EVENTS_GATHER_SECONDS = 0.05
"""How long the event applier lets notified events gather before it drains them."""


async def _apply_events_forever(
    listen_url: str | None,
    pool: AsyncConnectionPool,
    poll_interval: float,
    stop: asyncio.Event,
    totals: list[int],
    progress: Progress,
) -> None:
    """Apply the delivery events the webhooks stored, woken by their NOTIFY, polling every
    ``poll_interval`` seconds as a fallback (:mod:`lqs.worker.events`)."""

    def turned() -> None:
        progress.touch("events")

    # LISTEN first, then drain: an event stored while the listener was down is found by
    # the drain, and one stored after it by the notification.
    async with _listening(listen_url, EVENTS_PENDING_CHANNEL) as listener:
        while not stop.is_set():
            turned()
            done = await drain_events(pool, stop, progress=turned)
            totals[0] += done.applied
            if stop.is_set():
                break
            if listener is None:
                await _sleep_or_stop(poll_interval, stop)
            else:
                await _wait_for_work(listener, poll_interval, stop)
                # Providers post events one at a time: gathering them for a moment
                # makes one batch of many rather than many batches of one (each batch
                # is several statements, whatever its size).
                await _sleep_or_stop(EVENTS_GATHER_SECONDS, stop)


def _add_stats(totals: DispatchStats, stats: DispatchStats) -> None:
    for item in fields(DispatchStats):
        setattr(totals, item.name, getattr(totals, item.name) + getattr(stats, item.name))


async def _dispatch_forever(
    listen_url: str | None,
    pool: AsyncConnectionPool,
    dispatcher: Dispatcher,
    poll_interval: float,
    stop: asyncio.Event,
    totals: DispatchStats,
    progress: Progress,
) -> None:
    # Notifications are read all the time, not only between drains: a drain with requests
    # in flight claims new messages as soon as they are announced.
    wake = asyncio.Event()

    async def listen(listener: psycopg.AsyncConnection | None) -> None:
        if listener is None:  # polling: nothing to hear, wait for the end
            await asyncio.Event().wait()
        else:
            async for _ in listener.notifies():
                wake.set()

    async with _listening(listen_url, COMMUNICATIONS_PENDING_CHANNEL) as listener:
        listening = asyncio.create_task(listen(listener))
        try:
            while not stop.is_set():
                progress.touch("dispatcher")
                _add_stats(
                    totals,
                    await dispatcher.drain(
                        stop, wake=wake, progress=lambda: progress.touch("dispatcher")
                    ),
                )
                if stop.is_set():
                    break
                if listening.done():
                    listening.result()  # the listener failed: reconnect it
                async with pool.connection() as conn:
                    due_in = await next_due_in(conn)
                wait = poll_interval if due_in is None else min(poll_interval, due_in)
                await _woken_or_stopped(wake, max(wait, 0.01), stop, listening)
        finally:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError, psycopg.Error):
                await listening


async def _woken_or_stopped(
    wake: asyncio.Event, wait_seconds: float, stop: asyncio.Event, listening: asyncio.Task[None]
) -> None:
    """Wait for a notification (``wake``), ``stop``, or ``wait_seconds``; raise if the
    listening connection failed."""
    waits = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait()), listening}
    try:
        done, _ = await asyncio.wait(
            waits, timeout=wait_seconds, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for task in waits:
            if task is not listening:
                task.cancel()
    if listening in done:
        listening.result()  # the listener's error, if it failed


async def _purge_expired_keys(pool: AsyncConnectionPool) -> None:
    try:
        # A short wait for a connection: the heartbeat that follows must not be late.
        async with pool.connection(timeout=2.0) as conn:
            purged = await purge_expired_idempotency_keys(conn)
            counts = await purge_recipient_sends(conn, datetime.now(UTC) - CAP_PERIOD)
    except Exception as exc:
        # Housekeeping: the next turn tries again; the loops report an outage.
        log.debug("worker_purge_failed", error=str(exc))
        return
    if purged:
        log.info("idempotency_keys_purged", count=purged)
    if counts:
        log.info("recipient_sends_purged", count=counts)


async def refresh_stats(
    pool: AsyncConnectionPool,
    batch: int = REFRESH_BATCH,
    progress: Callable[[], None] = lambda: None,
    checkout_timeout: float | None = None,
) -> int:
    """Recount every (client, hour) logged as changed in the statistics rollup, ``batch``
    hours per transaction (``progress`` is called after each); how many hours were
    recounted. ``checkout_timeout``: how long to wait for a connection (None: the pool's).

    A batch cancelled by the statement timeout is tried again at half the size (a client's
    hour may hold many rows), down to one hour; other errors propagate.
    """
    total = 0
    while True:
        try:
            async with pool.connection(timeout=checkout_timeout) as conn:
                done = await refresh_rollup(conn, batch)
        except psycopg.errors.QueryCanceled:
            if batch == 1:
                raise
            batch = max(1, batch // 2)
            log.warning("stats_refresh_smaller_batch", batch=batch)
            continue
        progress()
        total += done
        if done < batch:
            return total


async def _refresh_stats_forever(
    pool: AsyncConnectionPool, interval: float, stop: asyncio.Event, progress: Progress
) -> None:
    """Refresh the statistics rollup every ``interval`` seconds until ``stop``."""
    while not stop.is_set():
        try:
            # A short wait for a connection: the queues' loops come first, and a worker
            # told to stop during an outage is not held up by the pool's longer wait.
            recounted = await refresh_stats(
                pool,
                progress=lambda: progress.touch("statistics"),
                checkout_timeout=STATS_CHECKOUT_TIMEOUT,
            )
        except PoolTimeout:
            recounted = 0  # the next turn tries again; the loops report an outage
        if recounted:
            log.debug("stats_refreshed", hours=recounted)
        next_turn = time.monotonic() + interval
        while not stop.is_set() and (left := next_turn - time.monotonic()) > 0:
            progress.touch("statistics")  # waiting on purpose is not a stall
            await _sleep_or_stop(min(left, 1.0), stop)


async def _retain_forever(
    pool: AsyncConnectionPool, interval: float, stop: asyncio.Event, progress: Progress
) -> None:
    """Apply every client's retention setting now, then every ``interval`` seconds, until
    ``stop`` (which also ends a run after its current batch); each batch is its own
    transaction, so a stop or an outage loses nothing."""
    while not stop.is_set():
        async with pool.connection() as conn:
            done = await run_retention(
                conn,
                datetime.now(UTC),
                after_batch=lambda: progress.touch("retention"),
                stop=stop,
            )
        for part in done:
            if part.counts is None:
                log.error("retention_setting_invalid", client=part.slug, problem=part.problem)
            else:
                log.info("retention_applied", client=part.slug, **part.counts.as_log())
        next_turn = time.monotonic() + interval
        while not stop.is_set() and (left := next_turn - time.monotonic()) > 0:
            progress.touch("retention")  # waiting on purpose is not a stall
            await _sleep_or_stop(min(left, 1.0), stop)


async def _heartbeat_forever(
    pool: AsyncConnectionPool,
    owner: str,
    stop: asyncio.Event,
    interval: float,
    progress: Progress,
    stall_after: float,
    purge_interval: float,
) -> None:
    started_at = datetime.now(UTC)
    host, pid = socket.gethostname(), os.getpid()
    purge_due = time.monotonic()
    while not stop.is_set():
        stalled = progress.stalled(stall_after)
        if stalled:
            # No beat: /readyz and whoever watches the heartbeats see this worker as gone.
            log.error("worker_loop_stalled", loops=stalled, seconds=stall_after)
            await _sleep_or_stop(interval, stop)
            continue
        try:
            async with pool.connection() as conn:
                await record_heartbeat(conn, owner=owner, host=host, pid=pid, started_at=started_at)
        except Exception as exc:
            # The loops report the outage; a missed beat is what /readyz should see.
            log.debug("worker_heartbeat_failed", error=str(exc))
        if time.monotonic() >= purge_due:  # after the beat: housekeeping never delays it
            purge_due = time.monotonic() + purge_interval
            await _purge_expired_keys(pool)
        await _sleep_or_stop(interval, stop)


async def _record_before_exit(dispatcher: Dispatcher, grace: float) -> None:
    """Record the outcomes still buffered, retrying for up to ``grace`` seconds."""
    deadline = time.monotonic() + grace
    backoff = Backoff(base=0.2, cap=5.0)
    while dispatcher.unrecorded:
        try:
            await dispatcher.record_outcomes()
        except Exception as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                # Their leases expire and another worker retries them: Resend deduplicates
                # by key; a SendGrid/Twilio message may then go out twice.
                log.error(
                    "worker_outcomes_unrecorded",
                    unrecorded=dispatcher.unrecorded,
                    error=str(exc),
                )
                return
            await asyncio.sleep(min(backoff.next_delay(), left))


async def _open_pool(database_url: str, config: WorkerConfig) -> AsyncConnectionPool:
    return await open_pool(
        database_url,
        min_size=min(config.pool_min_size, config.pool_max_size),
        max_size=config.pool_max_size,
        connect_timeout=config.connect_timeout,
        worker=True,
    )


async def _open_pool_patiently(
    database_url: str, config: WorkerConfig, stop: asyncio.Event
) -> AsyncConnectionPool | None:
    """The worker's pool; while the database is unreachable, wait and try again (a worker
    started before its database is not a configuration error). None if stopped first."""
    backoff = Backoff()
    while not stop.is_set():
        try:
            return await _open_pool(database_url, config)
        except DatabaseUnavailable as exc:
            delay = backoff.next_delay()
            log.warning("worker_waiting_for_database", error=str(exc), retry_in=round(delay, 2))
            await _sleep_or_stop(delay, stop)
    return None


def listen_url(database_url: str, direct_url: str | None) -> str | None:
    """Where the worker LISTENs: the direct URL when given, else the database URL unless it
    goes through a transaction pooler, where LISTEN silently hears nothing (the server
    connection that ran it goes back to the pooler's pool); None then: poll."""
    if direct_url:
        return direct_url
    return None if transaction_pooled(database_url) else database_url


async def run_worker(
    database_url: str,
    config: WorkerConfig,
    *,
    once: bool = False,
    stop: asyncio.Event | None = None,
    process: bool = True,
    dispatch: bool = True,
    heartbeat_interval: float = HEARTBEAT_INTERVAL,
    stall_after: float = STALL_AFTER,
    purge_interval: float = PURGE_INTERVAL,
    stats_interval: float = STATS_INTERVAL,
    retention_interval: float = RETENTION_INTERVAL,
) -> WorkerTotals:
    """Process queued leads and send pending communications.

    ``once``: apply the pending delivery events, drain both queues, apply the events again
    and return (the dispatcher also waits for retries that fall due within
    ``config.settle`` seconds); a database error ends the run. Otherwise
    run until ``stop`` is set, healing from database outages (see the module docstring);
    both loops wake on NOTIFY and poll every ``config.poll_interval`` seconds as a
    fallback, and the dispatcher also wakes when the next retry is due. ``process`` /
    ``dispatch`` run only one half. ``config.direct_url`` (LQS_DIRECT_DATABASE_URL) is
    where the daemon LISTENs; without it, a ``database_url`` that goes through a
    transaction pooler cannot carry LISTEN, and the daemon says once that it polls (see
    :func:`listen_url`).

    Raises:
        DatabaseUnavailable, UnsupportedServer: with ``once``, the database cannot be
            used; UnsupportedServer also for the daemon.
    """
    stop = stop or asyncio.Event()
    opened = (
        await _open_pool(database_url, config)
        if once
        else await _open_pool_patiently(database_url, config, stop)
    )
    if opened is None:
        return WorkerTotals(0, DispatchStats())
    pool = opened
    processor = LeadProcessor(
        pool,
        batch_size=config.batch_size,
        in_flight=config.in_flight,
        park_after=config.park_after,
    )
    poll_interval = config.poll_interval
    try:
        async with Dispatcher(pool, config.dispatcher) as dispatcher:
            if once:
                # Events first, so that a retry an event has settled is not sent again.
                drained = (await drain_events(pool, stop)).applied
                leads = await processor.drain(stop) if process else 0
                stats = (
                    await dispatcher.drain(stop, settle=config.settle)
                    if dispatch
                    else DispatchStats()
                )
                drained += (await drain_events(pool, stop)).applied
                await refresh_stats(pool)
                return WorkerTotals(leads, stats, events=drained)
            log.info(
                "worker_started",
                batch_size=config.batch_size,
                in_flight=config.in_flight,
                poll_interval=poll_interval,
                pool_max_size=config.pool_max_size,
                process=process,
                dispatch=dispatch,
                owner=dispatcher.owner,
            )
            listen_on = listen_url(database_url, config.direct_url)
            if listen_on is None:
                log.warning(
                    "worker_polling",
                    every_s=poll_interval,
                    reason="LQS_DATABASE_URL goes through a transaction pooler, where LISTEN "
                    "hears nothing; set LQS_DIRECT_DATABASE_URL to wake at once on new work",
                )
            processed = [0]
            totals = DispatchStats()
            progress = Progress()
            loops = []
            if process:
                loops.append(
                    supervise(
                        "processor",
                        lambda: _process_forever(
                            listen_on, processor, poll_interval, stop, processed, progress
                        ),
                        stop,
                        progress=progress,
                    )
                )
            if dispatch:
                loops.append(
                    supervise(
                        "dispatcher",
                        lambda: _dispatch_forever(
                            listen_on, pool, dispatcher, poll_interval, stop, totals, progress
                        ),
                        stop,
                        progress=progress,
                    )
                )
            applied = [0]
            loops.append(
                supervise(
                    "events",
                    lambda: _apply_events_forever(
                        listen_on, pool, poll_interval, stop, applied, progress
                    ),
                    stop,
                    progress=progress,
                )
            )
            loops.append(
                supervise(
                    "statistics",
                    lambda: _refresh_stats_forever(pool, stats_interval, stop, progress),
                    stop,
                    progress=progress,
                )
            )
            loops.append(
                supervise(
                    "retention",
                    lambda: _retain_forever(pool, retention_interval, stop, progress),
                    stop,
                    progress=progress,
                )
            )
            beating = asyncio.create_task(
                _heartbeat_forever(
                    pool,
                    dispatcher.owner,
                    stop,
                    heartbeat_interval,
                    progress,
                    stall_after,
                    purge_interval,
                )
            )
            try:
                interruptions = sum(await asyncio.gather(*loops))
                await _record_before_exit(dispatcher, config.shutdown_grace)
            finally:
                stop.set()
                await beating
            with contextlib.suppress(Exception):
                async with pool.connection(timeout=2.0) as conn:
                    await record_stopped(conn, dispatcher.owner)
            log.info(
                "worker_stopped",
                processed=processed[0],
                sent=totals.sent,
                events_applied=applied[0],
                interruptions=interruptions,
                unrecorded=dispatcher.unrecorded,
            )
            return WorkerTotals(processed[0], totals, interruptions, applied[0])
    finally:
        await pool.close()
