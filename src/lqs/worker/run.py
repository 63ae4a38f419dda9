"""The worker's run loops: drain once (the seed's every-minute cron) or keep running.

One process runs the lead processor and the dispatcher side by side. The daemon LISTENs
for new leads and for newly pending communications and wakes at once; it also polls every
``poll_interval`` seconds in case a notification was missed (NOTIFY is not durable), and
the dispatcher wakes when the next retry falls due. Both stop after their current batch
when ``stop`` is set (SIGTERM, SIGINT).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import psycopg
import structlog
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from lqs.db.connection import connect_async
from lqs.db.dispatch import next_due_in
from lqs.db.leads import LEADS_QUEUED_CHANNEL
from lqs.db.outbox import COMMUNICATIONS_PENDING_CHANNEL
from lqs.db.pool import open_pool
from lqs.worker.dispatcher import Dispatcher, DispatcherOptions, DispatchStats
from lqs.worker.processor import LeadProcessor

log = structlog.get_logger(__name__)


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
    _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass(frozen=True)
class WorkerTotals:
    """What a worker run did: leads processed, and what the dispatcher did."""

    leads: int
    dispatch: DispatchStats


async def _process_forever(
    database_url: str, processor: LeadProcessor, poll_interval: float, stop: asyncio.Event
) -> int:
    total = 0
    async with await connect_async(database_url, autocommit=True) as listener:
        await listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(LEADS_QUEUED_CHANNEL)))
        while not stop.is_set():
            total += await processor.drain(stop)
            if not stop.is_set():
                await _wait_for_work(listener, poll_interval, stop)
    return total


async def _dispatch_forever(
    database_url: str,
    pool: AsyncConnectionPool,
    dispatcher: Dispatcher,
    poll_interval: float,
    stop: asyncio.Event,
) -> DispatchStats:
    totals = DispatchStats()
    # Notifications are read all the time, not only between drains: a drain with requests
    # in flight claims new messages as soon as they are announced.
    wake = asyncio.Event()

    async def listen(listener: psycopg.AsyncConnection) -> None:
        async for _ in listener.notifies():
            wake.set()

    async with await connect_async(database_url, autocommit=True) as listener:
        await listener.execute(
            sql.SQL("LISTEN {}").format(sql.Identifier(COMMUNICATIONS_PENDING_CHANNEL))
        )
        listening = asyncio.create_task(listen(listener))
        try:
            while not stop.is_set():
                stats = await dispatcher.drain(stop, wake=wake)
                for name in (
                    "claimed", "sent", "retried", "failed", "rejected", "settled", "lost_leases"
                ):  # fmt: skip
                    setattr(totals, name, getattr(totals, name) + getattr(stats, name))
                if stop.is_set():
                    break
                async with pool.connection() as conn:
                    due_in = await next_due_in(conn)
                wait = poll_interval if due_in is None else min(poll_interval, due_in)
                await _woken_or_stopped(wake, max(wait, 0.01), stop, listening)
        finally:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening
    return totals


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


async def run_worker(
    database_url: str,
    *,
    batch_size: int = 100,
    in_flight: int = 2,
    poll_interval: float = 5.0,
    once: bool = False,
    stop: asyncio.Event | None = None,
    process: bool = True,
    dispatch: bool = True,
    dispatcher_options: DispatcherOptions | None = None,
    settle: float = 0.0,
) -> WorkerTotals:
    """Process queued leads and send pending communications.

    ``once``: drain both queues and return (the dispatcher also waits for retries that
    fall due within ``settle`` seconds). Otherwise run until ``stop`` is set; both loops
    wake on NOTIFY and poll every ``poll_interval`` seconds as a fallback, and the
    dispatcher also wakes when the next retry is due. ``process`` / ``dispatch`` run
    only one half. ``in_flight``: batches processed at once (see :class:`LeadProcessor`).

    Raises:
        DatabaseUnavailable, UnsupportedServer: the database cannot be used.
    """
    stop = stop or asyncio.Event()
    options = dispatcher_options or DispatcherOptions()
    pool = await open_pool(database_url, min_size=1, max_size=in_flight + 3, worker=True)
    processor = LeadProcessor(pool, batch_size=batch_size, in_flight=in_flight)
    try:
        async with Dispatcher(pool, options) as dispatcher:
            if once:
                leads = await processor.drain(stop) if process else 0
                stats = await dispatcher.drain(stop, settle=settle) if dispatch else DispatchStats()
                return WorkerTotals(leads, stats)
            log.info(
                "worker_started",
                batch_size=batch_size,
                in_flight=in_flight,
                poll_interval=poll_interval,
                process=process,
                dispatch=dispatch,
                owner=dispatcher.owner,
            )
            process_task = (
                asyncio.create_task(_process_forever(database_url, processor, poll_interval, stop))
                if process
                else None
            )
            dispatch_task = (
                asyncio.create_task(
                    _dispatch_forever(database_url, pool, dispatcher, poll_interval, stop)
                )
                if dispatch
                else None
            )
            leads = await process_task if process_task else 0
            stats = await dispatch_task if dispatch_task else DispatchStats()
            log.info("worker_stopped", processed=leads, sent=stats.sent)
            return WorkerTotals(leads, stats)
    finally:
        await pool.close()
