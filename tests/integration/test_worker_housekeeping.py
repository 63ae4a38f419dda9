"""The worker's periodic housekeeping: Idempotency-Key records past their window go."""

from __future__ import annotations

import asyncio
import time
import uuid
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from lqs.db.clients import create_client
from lqs.worker.run import run_worker
from tests.configs import worker_config


async def _keys(url: str, client_id: UUID) -> set[str]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            "SELECT key FROM public.idempotency_keys WHERE client_id = %s", (client_id,)
        )
        return {row[0] for row in await cur.fetchall()}


async def test_an_expired_idempotency_key_disappears_while_the_worker_runs(
    migrated_db: str,
) -> None:
    slug = f"keys-{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(migrated_db) as conn, conn.transaction():
        client = await create_client(conn, slug, slug, {})
        for key, age in (("expired", "25 hours"), ("fresh", "1 hour")):
            await conn.execute(
                "INSERT INTO public.idempotency_keys"
                " (client_id, key, request_hash, status_code, response, created_at)"
                " VALUES (%s, %s, %s, 202, %s, now() - %s::interval)",
                (client.id, key, b"hash", Jsonb({}), age),
            )

    stop = asyncio.Event()
    worker = asyncio.create_task(
        run_worker(
            migrated_db, worker_config(poll_interval=0.2), stop=stop, heartbeat_interval=0.05
        )
    )
    try:
        deadline = time.monotonic() + 20
        while "expired" in await _keys(migrated_db, client.id):
            assert time.monotonic() < deadline, "the expired key is still there"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(worker, timeout=30)

    assert await _keys(migrated_db, client.id) == {"fresh"}
