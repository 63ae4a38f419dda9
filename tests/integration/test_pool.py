"""The async pool (dead connections, outages, timeouts, run_transaction), worker connection
settings, and vocabularies against live constraints."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import AsyncConnection, conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from structlog.testing import capture_logs

from lqs.db.connection import transaction_pooled
from lqs.db.errors import DatabaseUnavailable
from lqs.db.pool import open_pool, run_transaction
from lqs.domain.vocabulary import (
    Channel,
    CommunicationStatus,
    ConsentStatus,
    LeadStatus,
)
from tests.conftest import direct_url


async def test_worker_connections_never_use_a_cached_generic_plan(migrated_db: str) -> None:
    pool = await open_pool(migrated_db, min_size=2, max_size=2, worker=True)
    try:
        for _ in range(3):
            async with pool.connection() as conn:
                cur = await conn.execute("SHOW plan_cache_mode")
                if transaction_pooled(migrated_db):
                    # Through a transaction pooler nothing is prepared: every statement is
                    # planned for its parameters, and the session keeps the default.
                    assert conn.prepare_threshold is None
                    assert await cur.fetchone() == ("auto",)
                else:
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
        ("public.communications", "communications_type_check", Channel),
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


# ---------------------------------------------------------------------------- resilience


def _terminate_backends(admin_url: str, url: str) -> None:
    """Terminate every backend of ``url``'s database and wait until they are gone."""
    name = conninfo.conninfo_to_dict(url)["dbname"]
    others = "FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
    with psycopg.connect(direct_url(admin_url), autocommit=True) as conn:
        conn.execute(f"SELECT pg_terminate_backend(pid) {others}", (name,))
        while (row := conn.execute(f"SELECT count(*) {others}", (name,)).fetchone()) and row[0]:
            time.sleep(0.01)


def _allow_connections(admin_url: str, url: str, allow: bool) -> None:
    name = conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(direct_url(admin_url), autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allow).lower()}'.encode())


async def test_dead_connections_are_replaced_before_they_are_handed_out(
    migrated_db: str, admin_url: str
) -> None:
    # Six dead connections: psycopg_pool's check alone would back off 0 + 1 + 2 s between
    # them and time out; the sweep at the first dead one makes every request succeed.
    pool = await open_pool(migrated_db, min_size=6, max_size=6, checkout_timeout=2)
    try:
        _terminate_backends(admin_url, migrated_db)
        for _ in range(8):
            async with pool.connection() as conn:
                assert await (await conn.execute("SELECT 1")).fetchone() == (1,)
    finally:
        await pool.close()


async def test_a_pool_reconnects_on_its_own_after_giving_up_during_an_outage(
    make_database: Callable[[], str], admin_url: str
) -> None:
    # On the server itself: through a pooler the pool's connections (to the pooler) would
    # survive the outage, and the pooler, not this pool, would do the reconnecting.
    url = direct_url(make_database())
    pool = await open_pool(
        url, min_size=2, max_size=2, checkout_timeout=0.5, reconnect_timeout=1, pooled=False
    )
    try:
        with capture_logs() as logs:
            _allow_connections(admin_url, url, False)
            _terminate_backends(admin_url, url)
            with pytest.raises(PoolTimeout):
                async with pool.connection():
                    pass
            # Longer than reconnect_timeout: psycopg_pool gives up on the lost connections.
            for _ in range(100):
                if any(e["event"] == "database_reconnect_failed" for e in logs):
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the pool never gave up reconnecting")
        _allow_connections(admin_url, url, True)
        for _ in range(100):
            try:
                async with pool.connection(timeout=1) as conn:
                    await conn.execute("SELECT 1")
                break
            except PoolTimeout:
                continue
        else:
            raise AssertionError("the pool did not reconnect")
    finally:
        _allow_connections(admin_url, url, True)
        await pool.close()


async def test_statement_timeout_is_set_on_each_connection_when_asked(migrated_db: str) -> None:
    # Through a transaction pooler the worker needs no plan_cache_mode (nothing is prepared).
    plan_cache_mode = "auto" if transaction_pooled(migrated_db) else "force_custom_plan"
    cases: list[tuple[dict[str, Any], tuple[str, str]]] = [
        ({}, ("0", "auto")),
        ({"statement_timeout": 1.5}, ("1500ms", "auto")),
        ({"statement_timeout": 2, "worker": True}, ("2s", plan_cache_mode)),
    ]
    for options, expected in cases:
        pool = await open_pool(migrated_db, min_size=1, max_size=1, **options)
        try:
            async with pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT current_setting('statement_timeout'), current_setting('plan_cache_mode')"
                )
                assert await cur.fetchone() == expected, options
        finally:
            await pool.close()


_KILL_FIRST_AT_COMMIT = """
CREATE TABLE attempts (id integer PRIMARY KEY);
CREATE FUNCTION kill_first() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id = 1 THEN
        PERFORM pg_terminate_backend(pg_backend_pid());
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER kill_first AFTER INSERT ON attempts
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION kill_first();
"""


async def test_run_transaction_retries_a_transaction_whose_connection_died(
    pool: AsyncConnectionPool,
) -> None:
    calls = 0

    async def work(conn: AsyncConnection) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        cur = await conn.execute("SELECT 42")
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    assert await run_transaction(pool, work, retry_at_commit=False) == 42
    assert calls == 2


@pytest.mark.parametrize("retry_at_commit", [True, False])
async def test_run_transaction_repeats_a_lost_commit_only_when_told_it_is_safe(
    make_database: Callable[[], str], retry_at_commit: bool
) -> None:
    url = make_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_KILL_FIRST_AT_COMMIT.encode())
    pool = await open_pool(url, min_size=1, max_size=1)
    calls = 0

    async def work(conn: AsyncConnection) -> None:
        nonlocal calls
        calls += 1
        await conn.execute("INSERT INTO attempts VALUES (%s)", (calls,))

    try:
        if retry_at_commit:
            await run_transaction(pool, work, retry_at_commit=True)
        else:
            # AdminShutdown; through PgBouncer the lost connection without the server's code.
            with pytest.raises(psycopg.OperationalError):
                await run_transaction(pool, work, retry_at_commit=False)
    finally:
        await pool.close()
    with psycopg.connect(url) as conn:
        stored = [row[0] for row in conn.execute("SELECT id FROM attempts").fetchall()]
    assert (calls, stored) == ((2, [2]) if retry_at_commit else (1, []))


@pytest.mark.parametrize(
    ("statement", "error"),
    [
        ("SET LOCAL statement_timeout = 50; SELECT pg_sleep(5)", psycopg.errors.QueryCanceled),
        ("SELECT 1 / 0", psycopg.errors.DivisionByZero),
    ],
    ids=["statement-timeout", "not-transient"],
)
async def test_run_transaction_does_not_retry_what_a_new_connection_cannot_cure(
    pool: AsyncConnectionPool, statement: str, error: type[Exception]
) -> None:
    calls = 0

    async def work(conn: AsyncConnection) -> None:
        nonlocal calls
        calls += 1
        await conn.execute(statement.encode())

    with pytest.raises(error):
        await run_transaction(pool, work, retry_at_commit=True)
    assert calls == 1
