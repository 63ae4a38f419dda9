"""Pure parts of the Supabase CLI export and history: naming, versioning, recognising rows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lqs.config import Settings
from lqs.db.errors import MigrationError
from lqs.db.migrate import (
    DEFAULT_LOCK_TIMEOUT,
    SUPERSEDED_CHECKSUMS,
    AppliedMigration,
    Migration,
    MigrationState,
    load_migrations,
    merge_history,
    migration_status,
)
from lqs.db.supabase_cli import (
    RecordedExport,
    export_header,
    parse_after,
    plan_export,
    recognise_export,
)

ONE = Migration(1, "supabase_compat", "SELECT 1;")
TWO = Migration(2, "tenants_and_leads", "SELECT 2;")
THREE = Migration(3, "communications", "SELECT 3;")
NAMES = {m.version: m.name for m in (ONE, TWO, THREE)}
NOW = datetime(2026, 3, 12, 9, 45, 0, tzinfo=UTC)
USERS_OWN = {"20260301120000_create_profiles.sql": "create table profiles (id uuid);\n"}


def _first_line(migration: Migration) -> str:
    return export_header(migration).splitlines(keepends=True)[0]


def test_new_files_are_versioned_after_the_projects_newest_migration() -> None:
    later = {**USERS_OWN, "20270101000000_later_work.sql": "select 1;\n"}

    plan = plan_export(later, [ONE, TWO], now=NOW)

    assert plan == {
        1: "20270101000001_lqs_0001_supabase_compat.sql",
        2: "20270101000002_lqs_0002_tenants_and_leads.sql",
    }


def test_new_files_in_an_empty_folder_are_versioned_from_now() -> None:
    plan = plan_export({}, [ONE], now=NOW)
    assert plan == {1: "20260312094501_lqs_0001_supabase_compat.sql"}


def test_after_places_new_files_after_a_later_version_than_the_folder_has() -> None:
    plan = plan_export(USERS_OWN, [ONE], after=datetime(2026, 6, 1, tzinfo=UTC), now=NOW)
    assert plan == {1: "20260601000001_lqs_0001_supabase_compat.sql"}


def test_after_older_than_the_folder_still_places_files_after_the_folder() -> None:
    plan = plan_export(USERS_OWN, [ONE], after=datetime(2020, 1, 1, tzinfo=UTC), now=NOW)
    assert plan == {1: "20260301120001_lqs_0001_supabase_compat.sql"}


def test_reexport_keeps_every_exported_version_and_places_only_new_ones() -> None:
    first = plan_export(USERS_OWN, [ONE, TWO], now=NOW)
    folder = {**USERS_OWN, **dict.fromkeys(first.values(), "")}
    folder["20261101000000_users_newer_work.sql"] = "select 1;\n"

    second = plan_export(folder, [ONE, TWO, THREE], now=NOW)

    assert second[1] == first[1]
    assert second[2] == first[2]
    assert second[3] == "20261101000001_lqs_0003_communications.sql"


def test_files_of_the_first_scheme_keep_their_names() -> None:
    folder = {
        "20250906000001_supabase_compat.sql": _first_line(ONE),
        "20250906000002_tenants_and_leads.sql": _first_line(TWO),
        **USERS_OWN,
    }

    plan = plan_export(folder, [ONE, TWO, THREE], now=NOW)

    assert plan[1] == "20250906000001_supabase_compat.sql"
    assert plan[2] == "20250906000002_tenants_and_leads.sql"
    assert plan[3] == "20260312094501_lqs_0003_communications.sql"


def test_a_users_migration_on_the_first_schemes_day_is_not_taken_for_lqs() -> None:
    folder = {"20250906000001_my_init.sql": "create table t (id int);\n"}
    plan = plan_export(folder, [ONE], now=NOW)
    assert plan == {1: "20260312094501_lqs_0001_supabase_compat.sql"}


def test_two_files_for_one_lqs_migration_are_refused() -> None:
    folder = {
        "20250906000001_supabase_compat.sql": _first_line(ONE),
        "20260101000000_lqs_0001_supabase_compat.sql": _first_line(ONE),
    }
    with pytest.raises(MigrationError, match="two files for LQS migration 0001"):
        plan_export(folder, [ONE], now=NOW)


def test_a_removed_earlier_file_is_refused_rather_than_placed_out_of_order() -> None:
    folder = {"20260101000000_lqs_0002_tenants_and_leads.sql": _first_line(TWO)}
    with pytest.raises(MigrationError, match="has LQS migration 0002 but not 0001"):
        plan_export(folder, [ONE, TWO], now=NOW)


@pytest.mark.parametrize("filename", ["9_odd.sql", "99991399000000_not_a_date.sql"])
def test_a_version_that_is_not_a_timestamp_and_sorts_last_is_refused(filename: str) -> None:
    with pytest.raises(MigrationError, match="pass --after"):
        plan_export({filename: "select 1;\n"}, [ONE], now=NOW)


def test_parse_after_reads_a_cli_version() -> None:
    assert parse_after("20260301120000") == datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("text", ["2026030112000", "20261301120000", "2026-03-01", "", "x" * 14])
def test_parse_after_refuses_anything_but_a_valid_14_digit_time(text: str) -> None:
    with pytest.raises(ValueError, match=r"^--after .* expected YYYYMMDDHHMMSS"):
        parse_after(text)


def test_history_rows_are_recognised_by_header_then_name_then_first_scheme() -> None:
    header = export_header(ONE)
    assert recognise_export("20260101000000", "x", header, NAMES) == RecordedExport(
        1, "supabase_compat", ONE.checksum
    )
    assert recognise_export("20260101000000", "lqs_0002_tenants_and_leads", None, NAMES) == (
        RecordedExport(2, "tenants_and_leads", None)
    )
    assert recognise_export("20250906000003", None, None, NAMES) == RecordedExport(
        3, "communications", None
    )
    assert recognise_export("20250906000003", "communications", "", NAMES) is not None


@pytest.mark.parametrize(
    ("version", "name", "head"),
    [
        ("20260301120000", "create_profiles", "create table profiles (id uuid)"),
        ("20250906000001", "my_init", None),  # the first scheme's day, not LQS's name
        ("20250906000009", None, None),  # no such shipped migration
        ("20260301120000", "lqs_notes", "-- Exported by hand"),
    ],
)
def test_the_projects_own_rows_are_not_lqs_migrations(
    version: str, name: str | None, head: str | None
) -> None:
    assert recognise_export(version, name, head, NAMES) is None


def test_merged_history_takes_both_records_and_prefers_lqs_own() -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    lqs_rows = [(1, "supabase_compat", ONE.checksum, when)]
    cli_rows = [
        ("20260301120000", "create_profiles", "create table profiles (id uuid)"),
        ("20260301120001", "lqs_0001_supabase_compat", export_header(ONE)),
        ("20260301120002", "lqs_0002_tenants_and_leads", export_header(TWO)),
        ("20260301120003", "lqs_0003_communications", None),
    ]

    merged = merge_history([ONE, TWO, THREE], lqs_rows, cli_rows)

    assert merged == [
        AppliedMigration(1, "supabase_compat", ONE.checksum, when),
        AppliedMigration(2, "tenants_and_leads", TWO.checksum, None),
        AppliedMigration(3, "communications", THREE.checksum, None),
    ]
    assert {s.state for s in migration_status([ONE, TWO, THREE], merged)} == {
        MigrationState.APPLIED
    }


def test_a_pushed_file_exported_from_another_text_is_edited() -> None:
    other = Migration(2, "tenants_and_leads", "SELECT 'changed';")
    merged = merge_history([ONE, TWO], [], [("20260101000000", "x", export_header(other))])
    assert [s.state for s in migration_status([ONE, TWO], merged)] == [
        MigrationState.PENDING,
        MigrationState.EDITED,
    ]


def test_a_pushed_lqs_migration_newer_than_this_release_is_missing() -> None:
    merged = merge_history([ONE], [], [("20270101000000", "lqs_0010_future", None)])
    statuses = migration_status([ONE], merged)
    assert [(s.version, s.name, s.state) for s in statuses] == [
        (1, "supabase_compat", MigrationState.PENDING),
        (10, "future", MigrationState.MISSING),
    ]


def test_a_superseded_text_of_a_migration_still_counts_as_applied() -> None:
    old = AppliedMigration(1, "supabase_compat", "old-sha", NOW)
    superseded = {1: frozenset({"old-sha"})}
    assert migration_status([ONE], [old], superseded)[0].state is MigrationState.APPLIED
    assert migration_status([ONE], [old], {})[0].state is MigrationState.EDITED


def test_the_shipped_0001_supersedes_the_text_that_created_auth_jwt() -> None:
    shipped = load_migrations()[0]
    assert shipped.checksum not in SUPERSEDED_CHECKSUMS[1]
    assert "auth.jwt()" not in shipped.sql.replace("Use auth.jwt()", "")
    old = AppliedMigration(1, shipped.name, next(iter(SUPERSEDED_CHECKSUMS[1])), NOW)
    assert migration_status([shipped], [old])[0].state is MigrationState.APPLIED


def test_the_lock_timeout_setting_and_the_runner_share_one_default() -> None:
    assert Settings(_env_file=None).migration_lock_timeout == DEFAULT_LOCK_TIMEOUT  # type: ignore[call-arg]
