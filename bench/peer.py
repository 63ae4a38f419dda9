"""The processor's peer: PgQueuer draining no-op jobs from the same PostgreSQL server.

PgQueuer (https://github.com/janbjorge/pgqueuer) is a Postgres job queue for asyncio: a
``QueueManager`` claims a batch with ``FOR UPDATE SKIP LOCKED`` (status ``picked``), runs
each job's entrypoint as a task and moves finished jobs to its log table in batches. With
an entrypoint that does nothing, what is measured is the queue's own cost per job: the
figure a processor that also scores, renders and writes an outbox row is compared with.
"""

from __future__ import annotations

import asyncio
import time
from importlib.metadata import version
from typing import Any

import asyncpg
from pgqueuer import AsyncpgDriver, Queries, QueueManager
from pgqueuer.models import Job
from pgqueuer.types import QueueExecutionMode
from psycopg import conninfo

PGQUEUER_VERSION = version("pgqueuer")
ENTRYPOINT = "bench_noop"
TIMEOUT = 300.0
"""Seconds one drain may take before it is abandoned as stuck."""


class PeerError(RuntimeError):
    """PgQueuer could not be installed or did not finish its jobs."""


def _connect_kwargs(url: str) -> dict[str, Any]:
    """asyncpg's keyword arguments for a libpq URL or ``key=value`` string.

    Raises:
        PeerError: the URL uses a parameter asyncpg is not given here.
    """
    params = conninfo.conninfo_to_dict(url)
    kwargs: dict[str, Any] = {}
    for key, value in params.items():
        if key == "dbname":
            kwargs["database"] = value
        elif key in ("host", "user", "password"):
            kwargs[key] = value
        elif key == "port":
            kwargs["port"] = int(str(value))
        elif key == "sslmode":
            kwargs["ssl"] = value
        elif key == "connect_timeout":
            kwargs["timeout"] = float(str(value))
        elif key == "application_name":
            kwargs["server_settings"] = {"application_name": str(value)}
        else:
            raise PeerError(f"the database URL's {key!r} is not passed on to asyncpg")
    return kwargs


async def _install(queries: Queries, database: str) -> None:
    """Install PgQueuer's tables once per database, check them, and empty them."""
    try:
        if not await queries.schema_is_installed():
            await queries.install()
    except Exception as exc:
        raise PeerError(
            f"installing PgQueuer's schema into database {database!r} failed: {exc}"
        ) from exc
    try:
        await QueueManager(queries).verify_structure()
    except RuntimeError as exc:
        raise PeerError(f"PgQueuer's schema in database {database!r} is incomplete: {exc}") from exc
    await queries.clear_queue()
    await queries.clear_queue_log()
    await queries.clear_statistics_log()


async def _drain(url: str, n: int, batch_size: int, time_limit: float) -> float:
    kwargs = _connect_kwargs(url)
    setup = await asyncpg.connect(**kwargs)
    try:
        queries = Queries(AsyncpgDriver(setup))
        await _install(queries, str(kwargs.get("database")))
        # One statement for all n jobs, not timed: the peer's enqueue is not what is compared.
        await queries.enqueue([ENTRYPOINT] * n, [None] * n, [0] * n)
        await setup.execute(f"ANALYZE {queries.qbe.settings.qualified.queue_table}")
    finally:
        await setup.close()

    connection = await asyncpg.connect(**kwargs)
    try:
        queries = Queries(AsyncpgDriver(connection))
        manager = QueueManager(queries)
        done = 0

        @manager.entrypoint(ENTRYPOINT)
        async def noop(job: Job) -> None:
            nonlocal done
            done += 1

        # Drain mode returns once the queue is empty and every job is logged as finished
        # (the status buffer is flushed on the way out); the clock includes run()'s start-up
        # checks of the schema, a few catalogue queries.
        started = time.perf_counter()
        try:
            async with asyncio.timeout(time_limit):
                await manager.run(batch_size=batch_size, mode=QueueExecutionMode.drain)
        except TimeoutError as exc:
            raise PeerError(
                f"PgQueuer ran {done:,} of {n:,} jobs in {time_limit:.0f} s, then was stopped"
            ) from exc
        elapsed = time.perf_counter() - started
        left = sum(row.count for row in await queries.queue_size())
    finally:
        await connection.close()
    if done != n or left:
        raise PeerError(f"PgQueuer ran {done:,} of {n:,} jobs and left {left:,} in its queue")
    return n / elapsed


def pgqueuer_rate(url: str, n: int, batch_size: int = 100, timeout: float = TIMEOUT) -> float:
    """No-op jobs per second: PgQueuer (``QueueManager`` over ``AsyncpgDriver``, one
    process) draining ``n`` jobs enqueued beforehand, ``batch_size`` per dequeue.

    Installs PgQueuer's schema into the database at ``url`` on first use and empties its
    tables before every run.

    Raises:
        PeerError: the schema could not be installed, or the jobs were not all done
            within ``timeout`` seconds.
    """
    return asyncio.run(_drain(url, n, batch_size, timeout))
