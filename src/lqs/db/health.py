"""Readiness SQL: are this database's migrations current, and is some worker alive?

The API's ``/readyz`` runs :func:`readiness_problems` on a pooled connection. Both checks
read only: the migration record (LQS's own and the Supabase CLI's for a database migrated
from exported files, merged as ``lqs db verify`` does) and ``worker_heartbeats``, which each
worker process updates every few seconds.
"""

from __future__ import annotations

from functools import cache

from psycopg import AsyncConnection

from lqs.db.migrate import (
    HISTORY_TABLES,
    LQS_HISTORY,
    AppliedMigration,
    Migration,
    MigrationState,
    load_migrations,
    merge_history,
    migration_status,
    supabase_history_query,
)

_HEARTBEATS = "SELECT to_regclass('public.worker_heartbeats') IS NOT NULL"

_LIVE_WORKERS = """
SELECT count(*) FILTER (WHERE beat_at > now() - make_interval(secs => %s)),
       count(*),
       extract(epoch FROM now() - max(beat_at))::float8
FROM public.worker_heartbeats
WHERE stopped_at IS NULL
"""


@cache
def _shipped() -> tuple[Migration, ...]:
    # The files in the installed package: they cannot change while the process runs.
    return tuple(load_migrations())


async def _applied(conn: AsyncConnection) -> list[AppliedMigration]:
    # lqs.db.migrate.read_history, on an async connection: the same queries and merge.
    cur = await conn.execute(HISTORY_TABLES)
    row = await cur.fetchone()
    lqs_table, cli_table, has_name, has_statements = row if row else (False,) * 4
    lqs_rows = await (await conn.execute(LQS_HISTORY)).fetchall() if lqs_table else []
    cli_rows = (
        await (
            await conn.execute(
                supabase_history_query(has_name=has_name, has_statements=has_statements)
            )
        ).fetchall()
        if cli_table
        else []
    )
    return merge_history(_shipped(), lqs_rows, cli_rows)


def _migration_problem(applied: list[AppliedMigration]) -> str | None:
    by_state: dict[MigrationState, list[str]] = {}
    for status in migration_status(_shipped(), applied):
        by_state.setdefault(status.state, []).append(f"{status.version:04d}_{status.name}")
    problems = []
    if pending := by_state.get(MigrationState.PENDING):
        problems.append(f"{len(pending)} pending ({', '.join(pending)}): run `lqs db migrate`")
    if edited := by_state.get(MigrationState.EDITED):
        problems.append(f"edited after they were applied: {', '.join(edited)}")
    # Migrations newer than every file this release ships belong to a newer release
    # already deployed (a rolling deploy): migrations are forward-compatible, so that is
    # not a reason to take this process out of service. An unknown one in between is.
    newest = max((m.version for m in _shipped()), default=0)
    missing = [name for name in by_state.get(MigrationState.MISSING, []) if int(name[:4]) <= newest]
    if missing:
        problems.append(f"applied but unknown to this release: {', '.join(missing)}")
    return "; ".join(problems) or None


async def _worker_problem(conn: AsyncConnection, max_age: float) -> str | None:
    cur = await conn.execute(_LIVE_WORKERS, (max_age,))
    row = await cur.fetchone()
    fresh, running, newest_age = row if row else (0, 0, None)
    if fresh:
        return None
    if not running or newest_age is None:
        return "no running worker has reported a heartbeat"
    return f"stale: the newest worker heartbeat is {newest_age:.0f} s old (limit {max_age:g} s)"


async def readiness_problems(
    conn: AsyncConnection, *, worker_max_age: float | None
) -> dict[str, str | None]:
    """Check migrations and, unless ``worker_max_age`` is None, the worker heartbeats.

    Returns ``{"migrations": problem, "worker": problem}`` (``worker`` only when checked),
    each problem one line, or None when the check holds. Migrations fail when one is
    pending, edited, or missing from this release's files (except ones newer than all of
    them: a newer release's, during a rolling deploy); the worker check fails unless some
    worker that has not stopped beat within ``worker_max_age`` seconds (server clock).

    Raises:
        psycopg.Error: the database could not answer.
    """
    applied = await _applied(conn)
    cur = await conn.execute(_HEARTBEATS)
    row = await cur.fetchone()
    heartbeats = bool(row and row[0])
    problems: dict[str, str | None] = {"migrations": _migration_problem(applied)}
    if worker_max_age is not None:
        problems["worker"] = (
            await _worker_problem(conn, worker_max_age)
            if heartbeats
            else "public.worker_heartbeats does not exist (migrations pending)"
        )
    return problems
