"""Idempotency-Key records: a key's first response is replayed for :data:`IDEMPOTENCY_WINDOW`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from lqs.errors import InputError

IDEMPOTENCY_WINDOW = timedelta(hours=24)
"""How long a key's first response is replayed; after it, the key may be used afresh."""


class IdempotencyConflict(InputError):
    """Raised when a key is reused within its window with a different request body."""


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: dict[str, Any]


async def claim_idempotency_key(
    conn: AsyncConnection, client_id: UUID, key: str, request_hash: bytes
) -> StoredResponse | None:
    """Serialise requests with this key; return the stored response if there is one.

    Takes a transaction-level advisory lock on (client, key): a concurrent request with
    the same key waits for this transaction, then sees its stored response.

    Raises:
        IdempotencyConflict: the key was used within the window for a different body.
    """
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"idem:{client_id}:{key}",)
    )
    cur = await conn.execute(
        "SELECT request_hash, status_code, response FROM public.idempotency_keys"
        " WHERE client_id = %s AND key = %s AND created_at > now() - %s",
        (client_id, key, IDEMPOTENCY_WINDOW),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    stored_hash, status_code, body = row
    if bytes(stored_hash) != request_hash:
        raise IdempotencyConflict(
            "this Idempotency-Key was already used with a different request body"
        )
    return StoredResponse(status_code, body)


async def remember_response(
    conn: AsyncConnection,
    client_id: UUID,
    key: str,
    request_hash: bytes,
    response: StoredResponse,
) -> None:
    """Store the response (replacing an expired record of the same key)."""
    await conn.execute(
        "INSERT INTO public.idempotency_keys (client_id, key, request_hash, status_code, response)"
        " VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (client_id, key) DO UPDATE SET request_hash = EXCLUDED.request_hash,"
        " status_code = EXCLUDED.status_code, response = EXCLUDED.response, created_at = now()",
        (client_id, key, request_hash, response.status_code, Jsonb(response.body)),
    )


async def purge_expired_idempotency_keys(conn: AsyncConnection) -> int:
    """Delete records past their window; return how many."""
    cur = await conn.execute(
        "DELETE FROM public.idempotency_keys WHERE created_at <= now() - %s",
        (IDEMPOTENCY_WINDOW,),
    )
    return cur.rowcount
