"""The migration runner: ordered ``.sql`` files, each applied once, in its own transaction.

Applied migrations are recorded in ``lqs.schema_migrations`` with a SHA-256 of the file.
A database may also have had them applied by the Supabase CLI from ``lqs db
export-supabase`` files, recorded in ``supabase_migrations.schema_migrations``:
``read_history`` merges both records, and is what ``lqs db status``, ``migrate`` and
``verify`` read. ``migrate`` applies only what neither records.

Every run holds a PostgreSQL advisory lock, so two deploys started together apply each
migration exactly once: the second waits, then finds nothing pending. It waits a bounded
time (``lock_timeout``), then names the session holding the lock.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from importlib import resources
from importlib.resources.abc import Traversable

import psycopg
from psycopg import sql

from lqs.db.errors import MigrationDrift, MigrationError
from lqs.db.supabase_cli import recognise_export

# Arbitrary but fixed: "LQS" in ASCII, so other tools' advisory locks do not collide.
MIGRATION_LOCK_KEY = 0x4C5153

# Seconds a run waits for another run's lock (LQS_MIGRATION_LOCK_TIMEOUT, same default).
DEFAULT_LOCK_TIMEOUT = 60.0

# Applied migrations are immutable, with these exceptions: an earlier text of a shipped
# file that a later release replaced on purpose, because what it did on some databases
# was wrong and the replacement does the same everywhere else. A database that applied an
# earlier text is not "edited"; a migration after it repairs what needs repairing.
# version -> SHA-256 of each superseded text.
SUPERSEDED_CHECKSUMS: dict[int, frozenset[str]] = {
    # 0001 created auth.jwt(), which LQS never uses, owned by the migrating role; on a
    # Supabase project whose auth service had not run yet, the service's own migration
    # then failed ("must be owner of function jwt"). 0009 hands such objects over.
    1: frozenset({"b9f4bba0725d9b1a494f13d303b425c6868e609f71434d93048baa28a3892d6a"}),
}

_FILENAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One shipped migration file."""

    version: int
    name: str
    sql: str

    @property
    def filename(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class AppliedMigration:
    """A row of ``lqs.schema_migrations``."""

    version: int
    name: str
    checksum: str
    applied_at: datetime | None


class MigrationState(StrEnum):
    APPLIED = "applied"
    PENDING = "pending"
    EDITED = "edited"
    MISSING = "missing"


@dataclass(frozen=True)
class MigrationStatus:
    """A migration's state in one database: what ``lqs db status`` prints a row for."""

    version: int
    name: str
    state: MigrationState
    applied_at: datetime | None


def load_migrations(directory: Traversable | None = None) -> list[Migration]:
    """Read the migration files, ordered by version.

    Raises:
        MigrationError: a file is misnamed or two files share a version.
    """
    root = directory or resources.files("lqs.db") / "migrations"
    found: dict[int, Migration] = {}
    for entry in root.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILENAME.match(entry.name)
        if match is None:
            raise MigrationError(
                f"migration file {entry.name} is misnamed: expected NNNN_lowercase_name.sql"
            )
        version = int(match["version"])
        if version in found:
            raise MigrationError(
                f"migrations {found[version].filename} and {entry.name} share version {version}"
            )
        found[version] = Migration(version, match["name"], entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


_BOOKKEEPING = b"""
CREATE SCHEMA IF NOT EXISTS lqs;
CREATE TABLE IF NOT EXISTS lqs.schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    duration_ms integer NOT NULL
);
-- Only the owner (the migrating role) reads or writes it: no grants, RLS on, and one
-- policy that refuses every other role (so Supabase's advisor does not take the table
-- for one whose policies were forgotten).
ALTER TABLE lqs.schema_migrations ENABLE ROW LEVEL SECURITY;
DO $bookkeeping$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_policy WHERE polrelid = 'lqs.schema_migrations'::regclass
    ) THEN
        CREATE POLICY "Only the migrating role reads the history" ON lqs.schema_migrations
            AS RESTRICTIVE FOR ALL TO PUBLIC USING (false) WITH CHECK (false);
    END IF;
END
$bookkeeping$;
"""


def _bookkeeping_exists(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT to_regclass('lqs.schema_migrations') IS NOT NULL").fetchone()
    return bool(row and row[0])


# Which history tables exist, and which columns the Supabase CLI's has (its first
# releases recorded only ``version``).
HISTORY_TABLES = """
SELECT to_regclass('lqs.schema_migrations') IS NOT NULL,
       to_regclass('supabase_migrations.schema_migrations') IS NOT NULL,
       EXISTS (SELECT FROM pg_attribute
               WHERE attrelid = to_regclass('supabase_migrations.schema_migrations')
                 AND attname = 'name' AND NOT attisdropped),
       EXISTS (SELECT FROM pg_attribute
               WHERE attrelid = to_regclass('supabase_migrations.schema_migrations')
                 AND attname = 'statements' AND NOT attisdropped)
"""

LQS_HISTORY = (
    "SELECT version, name, checksum, applied_at FROM lqs.schema_migrations ORDER BY version"
)


def read_applied(conn: psycopg.Connection) -> list[AppliedMigration]:
    """The migrations LQS's own record holds (none if never migrated by LQS).

    Only ``lqs.schema_migrations``: ``read_history`` adds the Supabase CLI's record.
    """
    if not _bookkeeping_exists(conn):
        return []
    return [AppliedMigration(*row) for row in conn.execute(LQS_HISTORY).fetchall()]


def supabase_history_query(*, has_name: bool, has_statements: bool) -> sql.Composed:
    """The query for the CLI's rows: version, name, the start of the first statement."""
    # The export header is the first statement's first line: no need for the whole text.
    return sql.SQL(
        "SELECT version::text, {}, {} FROM supabase_migrations.schema_migrations ORDER BY version"
    ).format(
        sql.SQL("name" if has_name else "NULL::text"),
        sql.SQL("left(statements[1], 300)" if has_statements else "NULL::text"),
    )


def merge_history(
    known: Sequence[Migration],
    lqs_rows: Iterable[tuple[int, str, str, datetime | None]],
    supabase_rows: Iterable[tuple[str, str | None, str | None]],
) -> list[AppliedMigration]:
    """Every LQS migration either history records, by version (pure).

    ``lqs_rows`` are ``lqs.schema_migrations`` rows; they win where both record a version.
    ``supabase_rows`` are (version, name, start of first statement) rows of the CLI's table;
    the project's own migrations among them are ignored. A CLI row without the export
    header is taken as the shipped file (the CLI keeps no checksum).
    """
    shipped = {m.version: m for m in known}
    names = {v: m.name for v, m in shipped.items()}
    merged: dict[int, AppliedMigration] = {}
    for cli_version, name, head in supabase_rows:
        found = recognise_export(cli_version, name, head, names)
        if found is None or found.version in merged:
            continue
        checksum = found.checksum
        if checksum is None:
            # No checksum recorded: the file is the one shipped, or unknown to this release.
            checksum = shipped[found.version].checksum if found.version in shipped else ""
        merged[found.version] = AppliedMigration(found.version, found.name, checksum, None)
    for row in lqs_rows:
        applied = AppliedMigration(*row)
        merged[applied.version] = applied
    return [merged[v] for v in sorted(merged)]


def read_history(
    conn: psycopg.Connection, known: Sequence[Migration] | None = None
) -> list[AppliedMigration]:
    """The migrations this database records as applied, in LQS's table or the Supabase CLI's.

    ``known`` defaults to the shipped migrations (used to recognise the CLI's rows).
    """
    row = conn.execute(HISTORY_TABLES).fetchone()
    lqs_table, cli_table, has_name, has_statements = row if row else (False, False, False, False)
    lqs_rows = conn.execute(LQS_HISTORY).fetchall() if lqs_table else []
    cli_rows = (
        conn.execute(
            supabase_history_query(has_name=has_name, has_statements=has_statements)
        ).fetchall()
        if cli_table
        else []
    )
    return merge_history(known if known is not None else load_migrations(), lqs_rows, cli_rows)


def migration_status(
    known: Sequence[Migration],
    applied: Iterable[AppliedMigration],
    superseded: Mapping[int, frozenset[str]] = SUPERSEDED_CHECKSUMS,
) -> list[MigrationStatus]:
    """Compare shipped files with what a database recorded (pure).

    An applied checksum listed in ``superseded`` for its version counts as applied.
    """
    by_version = {a.version: a for a in applied}
    statuses: list[MigrationStatus] = []
    for m in known:
        a = by_version.pop(m.version, None)
        if a is None:
            statuses.append(MigrationStatus(m.version, m.name, MigrationState.PENDING, None))
        elif a.checksum != m.checksum and a.checksum not in superseded.get(m.version, ()):
            statuses.append(MigrationStatus(m.version, m.name, MigrationState.EDITED, a.applied_at))
        else:
            statuses.append(
                MigrationStatus(m.version, m.name, MigrationState.APPLIED, a.applied_at)
            )
    for a in by_version.values():
        statuses.append(MigrationStatus(a.version, a.name, MigrationState.MISSING, a.applied_at))
    return sorted(statuses, key=lambda s: s.version)


def drift_problems(statuses: Iterable[MigrationStatus]) -> list[str]:
    """One sentence per applied migration that no longer matches its file (pure)."""
    problems = []
    for s in statuses:
        filename = f"{s.version:04d}_{s.name}.sql"
        if s.state is MigrationState.EDITED:
            problems.append(
                f"migration {filename} was edited after it was applied; applied migrations are "
                "immutable: restore the file and put the change in a new migration"
            )
        elif s.state is MigrationState.MISSING:
            problems.append(
                f"migration {filename} is applied in the database but its file is missing; "
                "restore it (are you running an older LQS against a newer database?)"
            )
    return problems


def _apply_one(conn: psycopg.Connection, migration: Migration) -> None:
    try:
        with conn.transaction():
            conn.execute(b"SET LOCAL search_path TO public")
            started = time.monotonic()
            # No parameters: psycopg sends the file as one simple query, several statements.
            conn.execute(migration.sql.encode())
            conn.execute(
                "INSERT INTO lqs.schema_migrations (version, name, checksum, duration_ms) "
                "VALUES (%s, %s, %s, %s)",
                (
                    migration.version,
                    migration.name,
                    migration.checksum,
                    round((time.monotonic() - started) * 1000),
                ),
            )
    except psycopg.Error as exc:
        detail = " ".join(str(exc).split())
        raise MigrationError(
            f"migration {migration.filename} failed and was rolled back: {detail}"
        ) from exc


# Who holds the lock: a bigint key is classid (high half) and objid (low half), objsubid 1.
_LOCK_HOLDER = """
SELECT l.pid, a.application_name, host(a.client_addr), a.state, a.state_change, a.backend_start
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid::bigint = %s AND l.objid::bigint = %s
"""


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "unknown"


def _lock_holder(conn: psycopg.Connection) -> str:
    """One phrase naming the session that holds the migration lock."""
    row = conn.execute(
        _LOCK_HOLDER, (MIGRATION_LOCK_KEY >> 32, MIGRATION_LOCK_KEY & 0xFFFFFFFF)
    ).fetchone()
    if row is None:
        return "a session that has just released it (run the command again)"
    pid, application, client, state, state_since, connected = row
    return (
        f"backend pid {pid} (application {application or 'unnamed'!r}, "
        f"client {client or 'local socket'}, state {state or 'unknown'} since "
        f"{_when(state_since)}, connected since {_when(connected)}): wait for its migration "
        f"to finish, or end a stuck session with SELECT pg_terminate_backend({pid})"
    )


def _take_lock(conn: psycopg.Connection, timeout: float) -> None:
    """Take the session advisory lock, waiting at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = 0.05
    while True:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (MIGRATION_LOCK_KEY,)).fetchone()
        if row and row[0]:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise MigrationError(
                f"another migration has held the migration lock for over {timeout:g} s "
                f"(LQS_MIGRATION_LOCK_TIMEOUT); it is held by {_lock_holder(conn)}"
            )
        time.sleep(min(pause, left))
        pause = min(pause * 2, 1.0)


def migrate(
    conn: psycopg.Connection,
    migrations: Sequence[Migration] | None = None,
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> list[Migration]:
    """Apply every pending migration, in order; return those applied by this call.

    ``conn`` must be in autocommit mode: each migration gets its own transaction, and a
    failing one is rolled back whole while those before it stay applied. A migration is
    pending when neither LQS's record nor the Supabase CLI's has it (``read_history``);
    what this call applies is recorded in LQS's. The run waits at most ``lock_timeout``
    seconds for another run's lock.

    Raises:
        MigrationDrift: an applied migration was edited or its file is missing (nothing applied).
        MigrationError: a migration failed (it was rolled back; later ones were not tried),
            or the lock stayed held for ``lock_timeout`` seconds (the message names its holder).
    """
    known = list(migrations) if migrations is not None else load_migrations()
    if not conn.autocommit:
        raise ValueError("migrate() needs an autocommit connection")
    _take_lock(conn, lock_timeout)
    try:
        conn.execute(_BOOKKEEPING)
        statuses = migration_status(known, read_history(conn, known))
        problems = drift_problems(statuses)
        if problems:
            raise MigrationDrift("; ".join(problems))
        pending = {s.version for s in statuses if s.state is MigrationState.PENDING}
        applied: list[Migration] = []
        for migration in known:
            if migration.version in pending:
                _apply_one(conn, migration)
                applied.append(migration)
        return applied
    finally:
        if not conn.broken:
            # Session-level lock: released with the connection if it broke.
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
