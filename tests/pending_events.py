"""Apply the delivery events the webhooks stored, as the worker's applier would.

The webhook receiver only stores events; a test that POSTs one and then looks at the
communication runs :func:`apply_events` in between (or runs the worker). :func:`ingest`
stores events as the receiver does and applies them, for tests that build events by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import psycopg
from psycopg_pool import AsyncConnectionPool

from lqs.db.events import APPLY_BATCH, AppliedEvents, apply_pending_events, store_events
from lqs.domain.events import DeliveryEvent


async def apply_events(database: str | AsyncConnectionPool) -> AppliedEvents:
    """Apply every pending event of the database at ``database`` (a URL or a pool), in the
    applier's batches; the totals."""
    totals = AppliedEvents()
    while True:
        if isinstance(database, str):
            async with await psycopg.AsyncConnection.connect(database) as conn:
                done = await apply_pending_events(conn)
        else:
            async with database.connection() as conn:
                done = await apply_pending_events(conn)
        totals.add(done)
        if done.candidates < APPLY_BATCH:
            return totals


@dataclass(frozen=True)
class Ingested:
    """What storing then applying some events did."""

    stored: int
    duplicates: int
    unmatched: int
    """Applied events with no communication (yet): they wait for the send's record."""
    changed: int
    """Communications whose status changed."""


async def ingest(
    database: str | AsyncConnectionPool,
    client_id: UUID,
    provider: str,
    events: Sequence[DeliveryEvent],
) -> Ingested:
    """Store ``events`` for ``client_id`` as the webhook receiver does, then apply every
    pending event."""
    if isinstance(database, str):
        async with await psycopg.AsyncConnection.connect(database, autocommit=True) as conn:
            stored = await store_events(conn, client_id, provider, events)
    else:
        async with database.connection() as conn:
            stored = await store_events(conn, client_id, provider, events)
    applied = await apply_events(database)
    return Ingested(stored.stored, stored.duplicates, applied.waiting, applied.changed)
