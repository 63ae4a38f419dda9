"""LQS's migrations in the Supabase CLI's layout, and how the CLI's history names them.

``export_supabase`` writes each LQS migration to ``supabase/migrations`` as
``<version>_lqs_<NNNN>_<name>.sql``, e.g. ``20260312094501_lqs_0009_supabase_privileges.sql``.
``supabase db push`` applies a project's files in version order and refuses a file whose
version is older than the newest one the database has recorded, so:

- A migration exported for the first time gets a version after every file already in the
  folder (the project's own migrations and LQS's) and after ``--after`` when given; with
  neither, the current UTC time. Consecutive new migrations are one second apart.
- A migration exported before keeps its version: **the folder is the mapping**. Its file
  name says both versions, so a re-export finds it and rewrites it in place; no other
  file records the mapping. Keep the exported files with the project's migrations.
- Files exported by the first scheme (``20250906`` followed by the 6-digit LQS version,
  e.g. ``20250906000001_supabase_compat.sql``) are recognised and keep their names.

The CLI records each file it applies in ``supabase_migrations.schema_migrations``:
``version``, ``name`` (the file name between the version and ``.sql``) and ``statements``
(the file's statements, comments included), the last two only in CLIs since 2023.
``recognise_export`` reads an LQS migration back from such a row, or from a file: the
header every export starts with (which carries the file's SHA-256), else the ``lqs_NNNN_``
name, else the first scheme's version. The project's own migrations are not LQS's and
are ignored. ``lqs.db.migrate.read_history`` merges this with LQS's own record.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from lqs.db.errors import MigrationError

if TYPE_CHECKING:
    from lqs.db.migrate import Migration

# The first scheme's date: the version was this day with the LQS version as the time.
_FIRST_SCHEME_DAY = "20250906"
_FIRST_SCHEME_VERSION = re.compile(rf"^{_FIRST_SCHEME_DAY}(?P<version>\d{{6}})$")
# What the CLI takes for a migration file (supabase/cli pkg/migration/file.go).
_CLI_FILENAME = re.compile(r"^(?P<version>[0-9]+)_(?P<name>.*)\.sql$")
_LQS_NAME = re.compile(r"^lqs_(?P<version>\d{4})_(?P<name>[a-z0-9_]+)$")
_HEADER = re.compile(
    r"^-- Exported by `lqs db export-supabase` from LQS migration "
    r"(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql \(sha256 (?P<checksum>[0-9a-f]{64})\)\."
)
_TIMESTAMP = "%Y%m%d%H%M%S"


class RecordedExport(NamedTuple):
    """An LQS migration found in the Supabase CLI's history or folder.

    ``checksum`` is the SHA-256 of the LQS file it was exported from, when the row or file
    still carries the export header; None when only its name or version says which it is.
    """

    version: int
    name: str
    checksum: str | None


def first_scheme_version(migration: Migration) -> str:
    """The version the first export scheme gave ``migration`` (``20250906`` + 6 digits)."""
    return f"{_FIRST_SCHEME_DAY}{migration.version:06d}"


def exported_stem(cli_version: str, migration: Migration) -> str:
    """The file name (without ``.sql``) of ``migration`` exported at ``cli_version``."""
    return f"{cli_version}_lqs_{migration.version:04d}_{migration.name}"


def recognise_export(
    cli_version: str, name: str | None, head: str | None, known_names: Mapping[int, str]
) -> RecordedExport | None:
    """Which LQS migration a CLI history row or migration file is, if any (pure).

    ``head`` is the start of the row's first statement or of the file; ``known_names``
    maps the shipped LQS versions to their names (a first-scheme version only counts when
    the row has no name or the shipped migration's name).
    """
    header = _HEADER.match(head or "")
    if header:
        return RecordedExport(int(header["version"]), header["name"], header["checksum"])
    by_name = _LQS_NAME.match(name or "")
    if by_name:
        return RecordedExport(int(by_name["version"]), by_name["name"], None)
    first = _FIRST_SCHEME_VERSION.match(cli_version)
    if first:
        version = int(first["version"])
        shipped = known_names.get(version)
        if shipped is not None and name in (None, "", shipped):
            return RecordedExport(version, shipped, None)
    return None


def parse_after(text: str) -> datetime:
    """Read ``--after``: a CLI migration version, ``YYYYMMDDHHMMSS`` (UTC).

    Raises:
        ValueError: not 14 digits forming a valid time (the message names ``--after``).
    """
    try:
        if not re.fullmatch(r"\d{14}", text):
            raise ValueError(text)
        return datetime.strptime(text, _TIMESTAMP).replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(
            f"--after {text!r} is not a migration version: expected YYYYMMDDHHMMSS, "
            "e.g. 20260301120000 (the newest version in supabase/migrations)"
        ) from None


def _as_time(cli_version: str) -> datetime | None:
    """A version as the UTC time it names, or None if it is not ``YYYYMMDDHHMMSS``."""
    try:
        return parse_after(cli_version)
    except ValueError:
        return None


def _existing_files(folder: Path) -> dict[str, str]:
    """CLI migration file name -> its first line, for every migration file in ``folder``."""
    found = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and _CLI_FILENAME.match(path.name):
            with path.open(encoding="utf-8", errors="replace") as file:
                found[path.name] = file.readline()
    return found


def plan_export(
    existing: Mapping[str, str],
    migrations: Sequence[Migration],
    *,
    after: datetime | None = None,
    now: datetime | None = None,
) -> dict[int, str]:
    """LQS version -> the file name to write it to (pure).

    ``existing`` maps the folder's migration file names to their first lines. Exported
    migrations keep their file; the others get versions after every existing file and
    after ``after`` (default: ``now``, when the folder has no migration either).

    Raises:
        MigrationError: two files export one LQS migration, or the new ones could not be
            placed after the ones already exported (a file was removed).
    """
    known_names = {m.version: m.name for m in migrations}
    kept: dict[int, str] = {}
    newest: str | None = None
    for filename, first_line in existing.items():
        match = _CLI_FILENAME.match(filename)
        if match is None:
            continue
        newest = max(newest or match["version"], match["version"])
        found = recognise_export(match["version"], match["name"], first_line, known_names)
        if found is None:
            continue
        if found.version in kept:
            raise MigrationError(
                f"supabase/migrations has two files for LQS migration {found.version:04d}: "
                f"{kept[found.version]} and {filename}; delete the one never pushed"
            )
        kept[found.version] = filename

    start = after or (now or datetime.now(UTC)).replace(microsecond=0)
    if newest is not None and (newest_time := _as_time(newest)) is not None:
        start = max(start, newest_time)
    plan: dict[int, str] = {}
    step = 0
    for migration in migrations:
        if migration.version in kept:
            plan[migration.version] = kept[migration.version]
            continue
        later = [v for v in kept if v > migration.version]
        if later:
            raise MigrationError(
                f"supabase/migrations has LQS migration {max(later):04d} but not "
                f"{migration.version:04d}: restore its file from version control"
            )
        step += 1
        cli_version = (start + timedelta(seconds=step)).strftime(_TIMESTAMP)
        if newest is not None and cli_version <= newest:
            raise MigrationError(
                f"cannot place LQS migrations after supabase/migrations/{newest}_*.sql: its "
                "version is not YYYYMMDDHHMMSS; pass --after with a later version"
            )
        plan[migration.version] = exported_stem(cli_version, migration) + ".sql"
    return plan


def export_header(migration: Migration) -> str:
    """The comment every exported file starts with (``recognise_export`` reads it back)."""
    return (
        f"-- Exported by `lqs db export-supabase` from LQS migration "
        f"{migration.filename} (sha256 {migration.checksum}).\n"
        "-- Do not edit or rename: change LQS's migrations and export again.\n\n"
    )


def export_supabase(
    target: Path, migrations: Sequence[Migration], *, after: datetime | None = None
) -> list[Path]:
    """Write every migration under ``target/supabase/migrations``; return the paths written.

    Files exported before are rewritten under their own names; new ones are versioned
    after every migration in the folder and after ``after`` (see the module docstring).
    The project's own files are left alone.

    Raises:
        MigrationError: the folder cannot be created, read or written, or holds an
            inconsistent set of exported files (see ``plan_export``).
    """
    folder = target / "supabase" / "migrations"
    written = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        plan = plan_export(_existing_files(folder), migrations, after=after)
        for migration in migrations:
            path = folder / plan[migration.version]
            path.write_text(export_header(migration) + migration.sql, encoding="utf-8")
            written.append(path)
    except OSError as exc:
        raise MigrationError(
            f"cannot write Supabase migrations to {folder}: {exc.strerror or exc}"
        ) from exc
    return written
