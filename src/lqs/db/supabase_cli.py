"""LQS's migrations in the Supabase CLI's layout, and the CLI's record of what it applied.

``export_supabase`` writes ``supabase/migrations/<version>_<name>.sql``; a project that ships
them with ``supabase db push`` has them recorded in ``supabase_migrations.schema_migrations``
rather than in LQS's own table, and ``read_supabase_applied`` reads that record.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import psycopg

from lqs.db.errors import MigrationError
from lqs.db.migrate import AppliedMigration, Migration, load_migrations

# The seed's date; a migration's version fills the time part, so names never change
# between exports and sort in LQS's order among themselves.
_EPOCH = "20250906"


def supabase_version(migration: Migration) -> str:
    """The 14-digit version the Supabase CLI will record for this migration."""
    return f"{_EPOCH}{migration.version:06d}"


def export_supabase(target: Path, migrations: Sequence[Migration] | None = None) -> list[Path]:
    """Write every migration under ``target/supabase/migrations``; return the paths written.

    Other files already in that folder are left alone; ours are rewritten with the same names.

    Raises:
        MigrationError: the folder cannot be created or written.
    """
    folder = target / "supabase" / "migrations"
    written = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for migration in migrations if migrations is not None else load_migrations():
            path = folder / f"{supabase_version(migration)}_{migration.name}.sql"
            header = (
                f"-- Exported by `lqs db export-supabase` from LQS migration "
                f"{migration.filename} (sha256 {migration.checksum}).\n"
                "-- Do not edit: change LQS's migrations and export again.\n\n"
            )
            path.write_text(header + migration.sql, encoding="utf-8")
            written.append(path)
    except OSError as exc:
        raise MigrationError(
            f"cannot write Supabase migrations to {folder}: {exc.strerror or exc}"
        ) from exc
    return written


def read_supabase_applied(
    conn: psycopg.Connection, migrations: Sequence[Migration] | None = None
) -> list[AppliedMigration]:
    """LQS migrations the Supabase CLI recorded as applied (empty if it never ran here).

    The CLI stores each file's statements, not a checksum: a migration is taken as
    applied, with its shipped checksum, when its exported version is recorded.
    """
    row = conn.execute(
        "SELECT to_regclass('supabase_migrations.schema_migrations') IS NOT NULL"
    ).fetchone()
    if not (row and row[0]):
        return []
    recorded = {
        str(version)
        for (version,) in conn.execute(
            "SELECT version FROM supabase_migrations.schema_migrations"
        ).fetchall()
    }
    return [
        AppliedMigration(m.version, m.name, m.checksum, applied_at=None)
        for m in (migrations if migrations is not None else load_migrations())
        if supabase_version(m) in recorded
    ]
