"""The async pool, worker connection settings, and vocabularies against live constraints."""

from __future__ import annotations

import re

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from lqs.db.errors import DatabaseUnavailable
from lqs.db.pool import open_pool
from lqs.domain.vocabulary import (
    CommunicationStatus,
    CommunicationType,
    ConsentStatus,
    LeadStatus,
)


async def test_worker_connections_never_use_a_cached_generic_plan(migrated_db: str) -> None:
    pool = await open_pool(migrated_db, min_size=2, max_size=2, worker=True)
    try:
        for _ in range(3):
            async with pool.connection() as conn:
                cur = await conn.execute("SHOW plan_cache_mode")
                assert await cur.fetchone() == ("force_custom_plan",)
    finally:
        await pool.close()


async def test_service_connections_keep_the_server_default(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        cur = await conn.execute("SHOW plan_cache_mode")
        assert await cur.fetchone() == ("auto",)


async def test_pool_on_an_unreachable_server_fails_with_a_clear_error() -> None:
    with pytest.raises(
        DatabaseUnavailable, match=r"cannot connect to PostgreSQL at x@127\.0\.0\.1:1/"
    ):
        await open_pool("postgresql://x@127.0.0.1:1/nothing", connect_timeout=2)


def _check_values(url: str, table: str, constraint: str) -> set[str]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = %s::regclass AND conname = %s",
            (table, constraint),
        ).fetchone()
    assert row is not None
    return set(re.findall(r"'([a-z_]+)'::character varying", row[0]))


@pytest.mark.parametrize(
    ("table", "constraint", "enum"),
    [
        ("public.communications", "communications_type_check", CommunicationType),
        ("public.communications", "communications_status_check", CommunicationStatus),
        ("public.communications", "communications_consent_status_check", ConsentStatus),
        ("public.leads", "leads_consent_status_check", ConsentStatus),
        ("public.leads", "leads_status_check", LeadStatus),
    ],
)
def test_python_vocabulary_matches_the_check_constraint(
    migrated_db: str, table: str, constraint: str, enum: type
) -> None:
    assert _check_values(migrated_db, table, constraint) == {e.value for e in enum}
