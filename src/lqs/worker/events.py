"""The worker's event applier: drain the pending delivery events in batches.

The webhook receiver only stores events (:func:`lqs.db.events.store_webhook_events`) and
NOTIFYs :data:`lqs.db.events.EVENTS_PENDING_CHANNEL`; this applies them,
:data:`lqs.db.events.APPLY_BATCH` per transaction (:func:`lqs.db.events.apply_pending_events`),
until none is left. A batch interrupted (the connection lost, the process killed) rolls
back whole and is claimed again, so every stored event is applied exactly once. Several
workers may drain at once; each event goes to one of them. The daemon's loop around this
(LISTEN, polling, supervision) is in :mod:`lqs.worker.run`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from psycopg_pool import AsyncConnectionPool

from lqs.db.events import APPLY_BATCH, AppliedEvents, apply_pending_events

log = structlog.get_logger(__name__)

BUSY_PAUSE = 0.05
"""Seconds to wait when a whole batch was held by another applier."""


async def drain_events(
    pool: AsyncConnectionPool,
    stop: asyncio.Event | None = None,
    *,
    batch_size: int = APPLY_BATCH,
    progress: Callable[[], None] = lambda: None,
) -> AppliedEvents:
    """Apply pending events, ``batch_size`` per transaction, until none is left (or
    ``stop`` is set: after the current batch). ``progress`` is called after each batch.

    Returns the totals; database errors propagate (the batch in hand rolled back).
    """
    totals = AppliedEvents()
    while stop is None or not stop.is_set():
        async with pool.connection() as conn:
            done = await apply_pending_events(conn, batch_size)
        progress()
        totals.add(done)
        if done.applied or done.waiting:
            log.debug("events_applied", applied=done.applied, waiting=done.waiting)
        if done.candidates < batch_size:
            break
        if not (done.applied or done.waiting):
            # Another applier holds the oldest ones: let it finish rather than spin.
            await asyncio.sleep(BUSY_PAUSE)
    return totals
