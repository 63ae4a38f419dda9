"""The migration runner: ordered ``.sql`` files, each applied once, in its own transaction.

Applied migrations are recorded in ``lqs.schema_migrations`` with a SHA-256 of the file.
Every run holds a PostgreSQL advisory lock, so two deploys started together apply each
migration exactly once: the second waits, then finds nothing pending.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from importlib import resources
from importlib.resources.abc import Traversable

import psycopg

from lqs.db.errors import MigrationDrift, MigrationError

# Arbitrary but fixed: "LQS" in ASCII, so other tools' advisory locks do not collide.
MIGRATION_LOCK_KEY = 0x4C5153

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
-- No policies: only the owner (the migrating role) reads or writes it.
ALTER TABLE lqs.schema_migrations ENABLE ROW LEVEL SECURITY;
"""


def _bookkeeping_exists(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT to_regclass('lqs.schema_migrations') IS NOT NULL").fetchone()
    return bool(row and row[0])


def read_applied(conn: psycopg.Connection) -> list[AppliedMigration]:
    """The migrations recorded as applied in this database (none if never migrated)."""
    if not _bookkeeping_exists(conn):
        return []
    rows = conn.execute(
        "SELECT version, name, checksum, applied_at FROM lqs.schema_migrations ORDER BY version"
    ).fetchall()
    return [AppliedMigration(*row) for row in rows]


def migration_status(
    known: Sequence[Migration], applied: Iterable[AppliedMigration]
) -> list[MigrationStatus]:
    """Compare shipped files with what a database recorded (pure)."""
    by_version = {a.version: a for a in applied}
    statuses: list[MigrationStatus] = []
    for m in known:
        a = by_version.pop(m.version, None)
        if a is None:
            statuses.append(MigrationStatus(m.version, m.name, MigrationState.PENDING, None))
        elif a.checksum != m.checksum:
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


def migrate(
    conn: psycopg.Connection, migrations: Sequence[Migration] | None = None
) -> list[Migration]:
    """Apply every pending migration, in order; return those applied by this call.

    ``conn`` must be in autocommit mode: each migration gets its own transaction, and a
    failing one is rolled back whole while those before it stay applied.

    Raises:
        MigrationDrift: an applied migration was edited or its file is missing (nothing applied).
        MigrationError: a migration failed (it was rolled back; later ones were not tried).
    """
    known = list(migrations) if migrations is not None else load_migrations()
    if not conn.autocommit:
        raise ValueError("migrate() needs an autocommit connection")
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
    try:
        conn.execute(_BOOKKEEPING)
        statuses = migration_status(known, read_applied(conn))
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
