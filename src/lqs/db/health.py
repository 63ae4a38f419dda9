"""Readiness SQL: are this database's migrations current, and is some worker alive?

The API's ``/readyz`` runs :func:`readiness_problems` on a pooled connection. Both checks
read only: the migration record (LQS's own, or the Supabase CLI's for a database migrated
from exported files, as ``lqs db verify`` does) and ``worker_heartbeats``, which each
worker process updates every few seconds.
"""

from __future__ import annotations

from functools import cache

from psycopg import AsyncConnection

from lqs.db.migrate import (
    AppliedMigration,
    Migration,
    MigrationState,
    load_migrations,
    migration_status,
)
from lqs.db.supabase_cli import supabase_version

_TABLES = """
SELECT to_regclass('lqs.schema_migrations') IS NOT NULL,
       to_regclass('supabase_migrations.schema_migrations') IS NOT NULL,
       to_regclass('public.worker_heartbeats') IS NOT NULL
"""

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


async def _applied(
    conn: AsyncConnection, *, lqs_record: bool, supabase_record: bool
) -> list[AppliedMigration]:
    if lqs_record:
        cur = await conn.execute(
            "SELECT version, name, checksum, applied_at FROM lqs.schema_migrations ORDER BY version"
        )
        applied = [AppliedMigration(*row) for row in await cur.fetchall()]
        if applied:
            return applied
    if supabase_record:
        cur = await conn.execute("SELECT version FROM supabase_migrations.schema_migrations")
        recorded = {str(version) for (version,) in await cur.fetchall()}
        return [
            AppliedMigration(m.version, m.name, m.checksum, applied_at=None)
            for m in _shipped()
            if supabase_version(m) in recorded
        ]
    return []


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
    cur = await conn.execute(_TABLES)
    row = await cur.fetchone()
    lqs_record, supabase_record, heartbeats = row if row else (False, False, False)
    applied = await _applied(conn, lqs_record=lqs_record, supabase_record=supabase_record)
    problems: dict[str, str | None] = {"migrations": _migration_problem(applied)}
    if worker_max_age is not None:
        problems["worker"] = (
            await _worker_problem(conn, worker_max_age)
            if heartbeats
            else "public.worker_heartbeats does not exist (migrations pending)"
        )
    return problems
