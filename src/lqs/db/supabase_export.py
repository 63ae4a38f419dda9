"""Write LQS's migrations in the Supabase CLI's layout: ``supabase/migrations/<ts>_<name>.sql``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lqs.db.errors import MigrationError
from lqs.db.migrate import Migration, load_migrations

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
