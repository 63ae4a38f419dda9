"""The worker's run loop: drain once (the seed's every-minute cron) or keep running.

The daemon LISTENs for new leads and wakes at once; it also polls every
``poll_interval`` seconds in case a notification was missed (NOTIFY is not durable). It
stops after the current batch when ``stop`` is set (SIGTERM, SIGINT).
"""

from __future__ import annotations

import asyncio
import contextlib

import psycopg
import structlog
from psycopg import sql

from lqs.db.connection import connect_async
from lqs.db.leads import LEADS_QUEUED_CHANNEL
from lqs.db.pool import open_pool
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


async def run_worker(
    database_url: str,
    *,
    batch_size: int = 100,
    in_flight: int = 2,
    poll_interval: float = 5.0,
    once: bool = False,
    stop: asyncio.Event | None = None,
) -> int:
    """Process queued leads; return how many were processed.

    ``once``: drain the queue and return. Otherwise run until ``stop`` is set.
    ``in_flight``: how many batches are processed at once (see :class:`LeadProcessor`).

    Raises:
        DatabaseUnavailable, UnsupportedServer: the database cannot be used.
    """
    stop = stop or asyncio.Event()
    pool = await open_pool(database_url, min_size=1, max_size=in_flight + 1, worker=True)
    processor = LeadProcessor(pool, batch_size=batch_size, in_flight=in_flight)
    total = 0
    try:
        if once:
            return await processor.drain(stop)
        async with await connect_async(database_url, autocommit=True) as listener:
            await listener.execute(
                sql.SQL("LISTEN {}").format(sql.Identifier(LEADS_QUEUED_CHANNEL))
            )
            log.info(
                "worker_started",
                batch_size=batch_size,
                in_flight=in_flight,
                poll_interval=poll_interval,
            )
            while not stop.is_set():
                total += await processor.drain(stop)
                if not stop.is_set():
                    await _wait_for_work(listener, poll_interval, stop)
        log.info("worker_stopped", processed=total)
        return total
    finally:
        await pool.close()
