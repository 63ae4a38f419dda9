"""Pure parts of the migration runner: loading files and comparing with the record."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from lqs.db.errors import MigrationError
from lqs.db.migrate import (
    AppliedMigration,
    Migration,
    MigrationState,
    drift_problems,
    load_migrations,
    migration_status,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _applied(m: Migration, checksum: str | None = None) -> AppliedMigration:
    return AppliedMigration(m.version, m.name, checksum or m.checksum, NOW)


def test_status_marks_applied_pending_edited_and_missing() -> None:
    one, two, three = (Migration(i, f"m{i}", f"SELECT {i};") for i in (1, 2, 3))
    gone = AppliedMigration(4, "gone", "abc", NOW)

    statuses = migration_status([one, two, three], [_applied(one), _applied(two, "x"), gone])

    assert [(s.version, s.state) for s in statuses] == [
        (1, MigrationState.APPLIED),
        (2, MigrationState.EDITED),
        (3, MigrationState.PENDING),
        (4, MigrationState.MISSING),
    ]
    problems = drift_problems(statuses)
    assert len(problems) == 2
    assert problems[0].startswith("migration 0002_m2.sql was edited after it was applied")
    assert problems[1].startswith("migration 0004_gone.sql is applied in the database but its file")


def test_nothing_applied_means_everything_pending_and_no_drift() -> None:
    known = [Migration(1, "a", "SELECT 1;"), Migration(2, "b", "SELECT 2;")]
    statuses = migration_status(known, [])
    assert {s.state for s in statuses} == {MigrationState.PENDING}
    assert drift_problems(statuses) == []


def test_load_orders_by_version_and_ignores_other_files(tmp_path: Path) -> None:
    (tmp_path / "0002_second.sql").write_text("SELECT 2;")
    (tmp_path / "0001_first.sql").write_text("SELECT 1;")
    (tmp_path / "README.md").write_text("notes")
    assert [m.filename for m in load_migrations(tmp_path)] == ["0001_first.sql", "0002_second.sql"]


@pytest.mark.parametrize("name", ["1_short.sql", "0001-dash.sql", "0001_Upper.sql", "0001_.sql"])
def test_misnamed_migration_file_is_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="misnamed"):
        load_migrations(tmp_path)


def test_two_files_with_one_version_are_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0001_b.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="share version 1"):
        load_migrations(tmp_path)


def test_shipped_migrations_load() -> None:
    shipped = load_migrations()
    assert shipped[0].filename == "0001_supabase_compat.sql"
    assert all(m.sql.strip() for m in shipped)
