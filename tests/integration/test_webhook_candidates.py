"""db/clients.py:webhook_candidates: the clients a delivery webhook may belong to."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import pytest
from psycopg_pool import AsyncConnectionPool

from lqs.db.clients import create_client, webhook_candidates
from lqs.db.pool import open_pool

RESEND = {"api_key": "re_key", "from_address": "a@b.example", "webhook_secret": "whsec_AAAA"}
TWILIO = {"account_sid": "AC" + "1" * 32, "auth_token": "token", "from_number": "+14155550100"}


@pytest.fixture(scope="module")
async def pool(migrated_db: str) -> AsyncIterator[AsyncConnectionPool]:
    opened = await open_pool(migrated_db, min_size=1, max_size=2, worker=True)
    yield opened
    await opened.close()


async def _client(pool: AsyncConnectionPool, delivery: Any) -> UUID:
    slug = f"wh-{uuid.uuid4().hex[:10]}"
    async with pool.connection() as conn:
        client = await create_client(conn, slug, slug, {"delivery": delivery})
    return client.id


async def test_candidates_are_the_clients_configuring_the_provider_oldest_first(
    pool: AsyncConnectionPool,
) -> None:
    first = await _client(pool, {"resend": RESEND})
    await _client(pool, {"twilio": TWILIO})
    second = await _client(pool, {"resend": RESEND, "twilio": TWILIO})
    await _client(pool, {"resend": {"api_key": ""}})  # invalid: left out

    async with pool.connection() as conn:
        found = await webhook_candidates(conn, "resend", None)

    ids = [c.client_id for c in found]
    assert ids.index(first) < ids.index(second)
    mine = [c for c in found if c.client_id in (first, second)]
    assert [c.client_id for c in mine] == [first, second]
    assert all(c.delivery.resend is not None for c in found)


async def test_the_paths_client_is_the_only_candidate(pool: AsyncConnectionPool) -> None:
    await _client(pool, {"twilio": TWILIO})
    mine = await _client(pool, {"twilio": TWILIO})

    async with pool.connection() as conn:
        found = await webhook_candidates(conn, "twilio", mine)
        none = await webhook_candidates(conn, "resend", mine)

    assert [c.client_id for c in found] == [mine]
    assert none == []
