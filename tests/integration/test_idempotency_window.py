"""An Idempotency-Key's first response is replayed for IDEMPOTENCY_WINDOW, and no longer."""

from __future__ import annotations

import uuid
from datetime import timedelta
from uuid import UUID

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from lqs.db.clients import create_client
from lqs.db.idempotency import (
    IDEMPOTENCY_WINDOW,
    StoredResponse,
    claim_idempotency_key,
    purge_expired_idempotency_keys,
    remember_response,
)

HASH = b"\x01" * 32
RESPONSE = StoredResponse(201, {"id": "lead-1"})


async def _key_aged(conn: AsyncConnection, age: timedelta) -> tuple[UUID, str]:
    slug = f"i-{uuid.uuid4().hex[:10]}"
    client = await create_client(conn, slug, slug, {})
    key = f"key-{slug}"
    await remember_response(conn, client.id, key, HASH, RESPONSE)
    await conn.execute(
        "UPDATE public.idempotency_keys SET created_at = now() - %s WHERE client_id = %s",
        (age, client.id),
    )
    return client.id, key


async def test_a_key_just_inside_the_window_is_replayed(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        client_id, key = await _key_aged(conn, IDEMPOTENCY_WINDOW - timedelta(minutes=1))
        found = await claim_idempotency_key(conn, client_id, key, HASH)

    assert found == RESPONSE


async def test_a_key_past_the_window_is_forgotten_and_purged(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        kept_client, kept_key = await _key_aged(conn, IDEMPOTENCY_WINDOW - timedelta(minutes=1))
        client_id, key = await _key_aged(conn, IDEMPOTENCY_WINDOW + timedelta(minutes=1))
        found = await claim_idempotency_key(conn, client_id, key, HASH)
        purged = await purge_expired_idempotency_keys(conn)
        kept = await claim_idempotency_key(conn, kept_client, kept_key, HASH)

    assert found is None
    assert purged == 1
    assert kept == RESPONSE
