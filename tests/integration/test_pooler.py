"""LQS through PgBouncer in transaction mode, as behind Supabase's pooled URL (port 6543).

The pooler (tests/pgbouncer.py) shares two server connections per database between every
client, keeps nothing prepared and resets nothing between clients. Through it: no
statement is prepared (one client could run another's), no session setting is left behind
for the next client, migrations need the direct URL, and the worker LISTENs on the direct
URL (or says once that it polls).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from structlog.testing import capture_logs

from lqs.api.app import create_app
from lqs.api.deps import WebhookConfig
from lqs.db.clients import create_client
from lqs.db.connection import connect
from lqs.db.leads import insert_or_merge_leads
from lqs.db.migrate import load_migrations
from lqs.db.pool import open_pool
from lqs.domain.leads import parse_lead
from lqs.worker.run import run_worker
from tests.configs import api_config, worker_config
from tests.conftest import DatabaseFactory, direct_url
from tests.integration.webhook_signing import PUBLIC, new_tenant, resend_request
from tests.pgbouncer import PgBouncer

POOLED = {"LQS_DATABASE_POOLER": "transaction"}


def run_lqs(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    merged = {k: v for k, v in os.environ.items() if not k.startswith("LQS_")}
    merged.update(env)
    return subprocess.run(
        [sys.executable, "-m", "lqs", *args],
        env=merged,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture(scope="module")
def direct(migrated_db: str) -> str:
    """The module's migrated database, reached directly."""
    return direct_url(migrated_db)


@pytest.fixture(scope="module")
def pooled(pgbouncer: PgBouncer, direct: str) -> str:
    """The same database through PgBouncer in transaction mode."""
    return pgbouncer.url(direct)


@pytest.fixture
def fresh_pooled(pgbouncer: PgBouncer, make_database: DatabaseFactory) -> str:
    """A fresh database through the pooler, for a test that leaves session state behind."""
    return pgbouncer.url(direct_url(make_database()))


def _show(url: str, setting: str) -> set[str]:
    """``setting`` as several clients in a row see it: together they meet each of the
    pooler's server connections for the database."""
    seen = set()
    clients = [psycopg.connect(url, autocommit=True, prepare_threshold=None) for _ in range(4)]
    try:
        for conn in clients:
            with conn.transaction():  # hold the server connection: the next client gets another
                row = conn.execute(f"SHOW {setting}".encode()).fetchone()
            assert row is not None
            seen.add(str(row[0]))
    finally:
        for conn in clients:
            conn.close()
    return seen


# ---------------------------------------------------------------------------- the fixture


def test_the_pooler_hands_one_clients_session_setting_to_the_next(fresh_pooled: str) -> None:
    # What makes the tests below meaningful: without LQS's care, state does leak.
    with psycopg.connect(fresh_pooled, autocommit=True) as conn:
        conn.execute("SELECT set_config('plan_cache_mode', 'force_custom_plan', false)")
    assert "force_custom_plan" in _show(fresh_pooled, "plan_cache_mode")


def test_automatic_prepared_statements_collide_through_the_pooler(fresh_pooled: str) -> None:
    outcomes = _interleave(
        psycopg.connect(fresh_pooled, autocommit=True, prepare_threshold=0),
        psycopg.connect(fresh_pooled, autocommit=True, prepare_threshold=0),
    )
    assert any(outcome != expected for outcome, expected in outcomes)


def _interleave(a: psycopg.Connection, b: psycopg.Connection) -> list[tuple[str, str]]:
    """Both connections run their own statement, with the same parameter count, in turn;
    returns (what came back or the error, what should have) for each run."""
    outcomes = []
    with a, b:
        for i in range(8):
            for conn, query, tag in ((a, "SELECT 'a:' || %s::text", "a"), (b, "SELECT 'b:' || %s::text", "b")):  # fmt: skip
                try:
                    row = conn.execute(query.encode(), (str(i),)).fetchone()
                    outcome = str(row[0]) if row else "no row"
                except psycopg.Error as exc:
                    outcome = type(exc).__name__
                outcomes.append((outcome, f"{tag}:{i}"))
    return outcomes


# ---------------------------------------------------------------------------- connections


def test_two_pooled_connections_never_run_each_others_statements(pooled: str) -> None:
    outcomes = _interleave(connect(pooled, pooled=True), connect(pooled, pooled=True))

    assert [outcome for outcome, _ in outcomes] == [expected for _, expected in outcomes]
    with connect(pooled, pooled=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() == (0,)


async def test_the_worker_pool_leaves_plan_cache_mode_to_other_clients(pooled: str) -> None:
    pool = await open_pool(pooled, min_size=2, max_size=2, worker=True, pooled=True)
    try:
        for _ in range(4):
            async with pool.connection() as conn:
                await conn.execute("SELECT 1")
    finally:
        await pool.close()

    assert _show(pooled, "plan_cache_mode") == {"auto"}


async def test_the_api_statement_timeout_holds_in_each_transaction_and_stays_there(
    pooled: str,
) -> None:
    pool = await open_pool(pooled, min_size=2, max_size=2, statement_timeout=0.3, pooled=True)
    try:
        for _ in range(3):
            async with pool.connection() as conn:
                cur = await conn.execute("SHOW statement_timeout")
                assert await cur.fetchone() == ("300ms",)
        with pytest.raises(psycopg.errors.QueryCanceled):
            async with pool.connection() as conn, conn.transaction():
                await conn.execute("SELECT pg_sleep(2)")
    finally:
        await pool.close()

    assert _show(pooled, "statement_timeout") == {"0"}


# ---------------------------------------------------------------------------- the CLI


def test_verify_passes_twice_through_the_pooler(pooled: str) -> None:
    env = {"LQS_DATABASE_URL": pooled, **POOLED}

    first = run_lqs("db", "verify", env=env)
    second = run_lqs("db", "verify", env=env)

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert "Schema verified" in second.stdout


def test_migrate_through_the_pooler_needs_the_direct_url(
    pgbouncer: PgBouncer, make_database: DatabaseFactory
) -> None:
    database = direct_url(make_database())
    env = {"LQS_DATABASE_URL": pgbouncer.url(database), **POOLED}

    refused = run_lqs("db", "migrate", env=env)
    migrated = run_lqs("db", "migrate", env={**env, "LQS_DIRECT_DATABASE_URL": database})
    status = run_lqs("db", "status", env=env)

    line = one_line_error(refused)
    assert "LQS_DIRECT_DATABASE_URL" in line
    assert "advisory lock" in line
    assert migrated.returncode == 0, migrated.stderr
    assert "applied 0001_" in migrated.stdout
    assert status.returncode == 0, status.stderr
    assert status.stdout.count("│ applied ") == len(load_migrations())


def test_port_6543_is_taken_as_a_transaction_pooler_without_the_setting() -> None:
    refused = run_lqs(
        "db", "migrate", env={"LQS_DATABASE_URL": "postgresql://lqs@127.0.0.1:6543/postgres"}
    )

    assert "LQS_DIRECT_DATABASE_URL" in one_line_error(refused)


def test_a_direct_url_without_the_database_url_is_refused() -> None:
    refused = run_lqs(
        "db", "status", env={"LQS_DIRECT_DATABASE_URL": "postgresql://lqs@127.0.0.1/postgres"}
    )

    line = one_line_error(refused)
    assert "LQS_DIRECT_DATABASE_URL" in line
    assert "LQS_DATABASE_URL" in line.replace("LQS_DIRECT_DATABASE_URL", "")


def test_an_unknown_pooler_mode_is_refused_naming_the_setting() -> None:
    refused = run_lqs("db", "status", env={"LQS_DATABASE_POOLER": "statement"})

    assert one_line_error(refused).startswith("error: LQS_DATABASE_POOLER:")


# ---------------------------------------------------------------------------- the worker


async def _client(url: str) -> UUID:
    slug = f"p-{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(url, prepare_threshold=None) as conn:
        client = await create_client(conn, slug, slug, {"notification_email": f"s@{slug}.test"})
        await conn.commit()
    return client.id


async def _queue_lead(pool: AsyncConnectionPool, client_id: UUID) -> UUID:
    lead = {"email": f"l-{uuid.uuid4().hex[:8]}@acme.example", "consent_status": "granted"}
    async with pool.connection() as conn:
        [stored] = await insert_or_merge_leads(conn, client_id, [parse_lead(lead)])
    return stored.id


async def _processed_within(pool: AsyncConnectionPool, lead_id: UUID, seconds: float) -> float:
    """Seconds until the lead leaves the queue; fails after ``seconds``."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT status FROM public.leads WHERE id = %s", (lead_id,))
            row = await cur.fetchone()
        if row is not None and row[0] != "queued":
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    pytest.fail(f"lead {lead_id} still queued after {seconds} s")


@pytest.fixture
async def app_pool(pooled: str) -> AsyncIterator[AsyncConnectionPool]:
    """A pool through the pooler, as the API's intake would use."""
    pool = await open_pool(pooled, min_size=1, max_size=2, pooled=True)
    yield pool
    await pool.close()


async def _stop(worker: asyncio.Task[Any], stop: asyncio.Event) -> None:
    stop.set()
    await asyncio.wait_for(worker, timeout=30)


async def test_the_worker_wakes_at_once_listening_on_the_direct_url(
    pooled: str, direct: str, app_pool: AsyncConnectionPool
) -> None:
    client_id = await _client(pooled)
    stop = asyncio.Event()
    worker = asyncio.create_task(
        run_worker(pooled, worker_config(direct_url=direct, poll_interval=5.0), stop=stop)
    )
    try:
        await _processed_within(app_pool, await _queue_lead(app_pool, client_id), 10)
        # The worker now waits on its LISTEN: only a notification wakes it before 5 s.
        took = await _processed_within(app_pool, await _queue_lead(app_pool, client_id), 10)
    finally:
        await _stop(worker, stop)

    assert took < 1.5


async def test_the_worker_without_a_direct_url_says_once_that_it_polls(
    pooled: str, app_pool: AsyncConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LQS_DATABASE_POOLER", "transaction")
    client_id = await _client(pooled)
    stop = asyncio.Event()
    with capture_logs() as logs:
        worker = asyncio.create_task(
            run_worker(pooled, worker_config(poll_interval=0.2), stop=stop)
        )
        try:
            for _ in range(3):
                await _processed_within(app_pool, await _queue_lead(app_pool, client_id), 10)
        finally:
            await _stop(worker, stop)

    polling = [entry for entry in logs if entry["event"] == "worker_polling"]
    assert len(polling) == 1
    assert polling[0]["log_level"] == "warning"
    assert polling[0]["every_s"] == 0.2
    assert "LQS_DIRECT_DATABASE_URL" in polling[0]["reason"]


# ---------------------------------------------------------------------------- the API


async def test_delivery_webhooks_are_answered_through_the_pooler(pooled: str, direct: str) -> None:
    tenant = await new_tenant(direct)
    app = create_app(
        pooled,
        api_config(pool_max_size=4, webhook_pool_max_size=4, webhook=WebhookConfig(PUBLIC, 300.0)),
        pooled=True,
    )
    statuses: list[int] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:

            async def post(i: int) -> int:
                request = resend_request(tenant, f"re_pooled_{i}")
                response = await http.post(
                    request.path, content=request.content, headers=request.headers
                )
                return response.status_code

            # Four connections on the pooler's two server connections, each past psycopg's
            # prepare threshold (five runs of a statement).
            for round_ in range(6):
                statuses += await asyncio.gather(*(post(round_ * 4 + i) for i in range(4)))

    assert statuses == [200] * 24
