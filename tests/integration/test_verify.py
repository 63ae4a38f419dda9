"""``verify``: a migrated database passes; every kind of drift fails, named."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo

from lqs.db.catalog import dump_schema, load_expected_schema, read_schema
from lqs.db.connection import connect
from lqs.db.migrate import migrate
from lqs.db.verify import SEED_EXPECTED_COLUMNS, verify

MigratedFactory = Callable[[], str]


@pytest.fixture(scope="module")
def migrated_template(direct_admin_url: str) -> Iterator[str]:
    """A migrated database used as a template: copies are cheap, and each test may break one."""
    name = f"lqs_tmpl_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(direct_admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"'.encode())
    with connect(conninfo.make_conninfo(direct_admin_url, dbname=name)) as conn:
        migrate(conn)
    yield name
    with psycopg.connect(direct_admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


@pytest.fixture
def migrated_copy(admin_url: str, migrated_template: str) -> Iterator[MigratedFactory]:
    created: list[str] = []

    def factory() -> str:
        name = f"lqs_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{migrated_template}"'.encode())
        created.append(name)
        return conninfo.make_conninfo(admin_url, dbname=name)

    yield factory
    with psycopg.connect(admin_url, autocommit=True) as admin:
        for name in created:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


def _problems_after(url: str, sql: str) -> list[str]:
    with connect(url) as conn:
        conn.execute(sql.encode())
        return verify(conn).problems


def test_migrated_database_verifies_with_the_seeds_24_rows(migrated_copy: MigratedFactory) -> None:
    with connect(migrated_copy()) as conn:
        report = verify(conn)
    assert report.ok, report.problems
    assert [(c, d, n) for _, c, d, n in report.seed_rows] == list(SEED_EXPECTED_COLUMNS)
    assert {t for t, *_ in report.seed_rows} == {"communications"}


@pytest.mark.parametrize(
    ("sabotage", "expected"),
    [
        (
            "DROP INDEX public.idx_communications_status",
            "communications: index idx_communications_status is missing",
        ),
        (
            "DROP INDEX public.idx_leads_queued",
            "leads: index idx_leads_queued is missing",
        ),
        (
            "ALTER TABLE public.communications DISABLE ROW LEVEL SECURITY",
            "communications: row level security is disabled",
        ),
        (
            "ALTER TABLE public.leads DISABLE ROW LEVEL SECURITY",
            "leads: row level security is disabled",
        ),
        (
            'DROP POLICY "Users can view communications for their client" ON public.communications',
            "communications: policy Users can view communications for their client is missing",
        ),
        (
            "CREATE POLICY everyone ON public.leads FOR SELECT USING (true)",
            "leads: unexpected policy everyone",
        ),
        (
            "ALTER TABLE public.communications ALTER COLUMN priority TYPE bigint",
            "communications.priority: type changed: expected 'integer', found 'bigint'",
        ),
        (
            "ALTER TABLE public.communications ALTER COLUMN retry_count DROP DEFAULT",
            "communications.retry_count: default changed",
        ),
        (
            "ALTER TABLE public.communications ALTER COLUMN subject SET NOT NULL",
            "communications.subject: not null changed",
        ),
        (
            "ALTER TABLE public.communications DROP CONSTRAINT communications_status_check",
            "communications: constraint communications_status_check is missing",
        ),
        (
            "ALTER TABLE public.communications ADD COLUMN next_attempt_at timestamptz",
            "seed verification query returned 25 rows for communications, expected 24",
        ),
        (
            "DROP TRIGGER trigger_communications_updated_at ON public.communications",
            "communications: trigger trigger_communications_updated_at is missing",
        ),
        (
            "COMMENT ON COLUMN public.communications.status IS 'whatever'",
            "communications.status: comment changed",
        ),
        ("DROP TABLE public.communications CASCADE", "communications: table is missing"),
        (
            "DROP FUNCTION public.lqs_set_updated_at() CASCADE",
            "function public.lqs_set_updated_at() is missing",
        ),
        (
            "DELETE FROM lqs.schema_migrations WHERE version = 3",
            "migration 0003_communications.sql is not applied",
        ),
        (
            "UPDATE lqs.schema_migrations SET checksum = 'x' WHERE version = 2",
            "migration 0002_tenants_and_leads.sql was edited after it was applied",
        ),
    ],
)
def test_verify_names_the_drift(
    migrated_copy: MigratedFactory, sabotage: str, expected: str
) -> None:
    problems = _problems_after(migrated_copy(), sabotage)
    assert any(p.startswith(expected) for p in problems), problems


# Each grant is one a Supabase project's defaults (or a hurried operator) would hand out.
EXTRA_GRANTS = [
    (
        "GRANT TRUNCATE ON public.communications TO anon",
        "table public.communications: anon holds TRUNCATE, which LQS does not grant "
        "(to take it back: REVOKE TRUNCATE ON TABLE public.communications FROM anon)",
    ),
    (
        "GRANT UPDATE (status, score) ON public.leads TO authenticated",
        "column public.leads.score: authenticated holds UPDATE",
    ),
    (
        "GRANT UPDATE ON public.clients TO authenticated",
        "table public.clients: authenticated holds UPDATE",
    ),
    (
        "GRANT UPDATE, DELETE ON public.consent_history TO service_role",
        "table public.consent_history: service_role holds DELETE, UPDATE",
    ),
    (
        "GRANT SELECT ON public.worker_heartbeats TO authenticated",
        "table public.worker_heartbeats: authenticated holds SELECT",
    ),
    (
        "GRANT USAGE ON SEQUENCE public.provider_events_id_seq TO anon",
        "sequence public.provider_events_id_seq: anon holds USAGE",
    ),
    (
        "GRANT EXECUTE ON FUNCTION public.lqs_set_updated_at() TO PUBLIC",
        "function public.lqs_set_updated_at(): PUBLIC holds EXECUTE",
    ),
    (
        "GRANT SELECT ON lqs.schema_migrations TO service_role",
        "table lqs.schema_migrations: service_role holds SELECT",
    ),
    (
        "GRANT SELECT ON public.templates TO anon WITH GRANT OPTION",
        "table public.templates: anon holds SELECT WITH GRANT OPTION",
    ),
    (
        "REVOKE INSERT ON public.leads FROM service_role",
        "table public.leads: service_role lacks INSERT",
    ),
]


@pytest.mark.parametrize(("grant", "expected"), EXTRA_GRANTS)
def test_verify_names_every_privilege_the_migrations_do_not_grant(
    supabase_migrated_db: str, grant: str, expected: str
) -> None:
    with connect(supabase_migrated_db, autocommit=False) as conn:
        assert verify(conn).ok
        conn.execute(grant.encode())
        problems = verify(conn).problems
        conn.rollback()
    assert any(p.startswith(expected) for p in problems), problems


def test_supabase_defaults_leave_no_extra_privilege_after_migrating(
    supabase_migrated_db: str,
) -> None:
    with connect(supabase_migrated_db) as conn:
        report = verify(conn)
    assert report.ok, report.problems


def test_never_migrated_database_fails_verification(empty_db: str) -> None:
    with connect(empty_db) as conn:
        report = verify(conn)
    assert not report.ok
    assert (
        "migration 0001_supabase_compat.sql is not applied: run `lqs db migrate`" in report.problems
    )
    assert "communications: table is missing" in report.problems


def test_shipped_schema_description_matches_a_fresh_migration(
    migrated_copy: MigratedFactory, repo_root: Path
) -> None:
    """schema.json is what verify compares with: it must be exactly what migrations build.

    After adding a migration, regenerate it with `make schema-snapshot`.
    """
    with connect(migrated_copy()) as conn:
        live = read_schema(conn)
    if os.environ.get("LQS_UPDATE_SCHEMA_SNAPSHOT") == "1":
        (repo_root / "src/lqs/db/schema.json").write_text(dump_schema(live), encoding="utf-8")
    assert dump_schema(live) == dump_schema(load_expected_schema())


def _seed_sql(repo_root: Path) -> str:
    seed = (repo_root / "tests/fixtures/seed_communications_migration.md").read_text("utf-8")
    match = re.search(r"```sql\n(-- Migration: Create communications.*?)```", seed, re.S)
    assert match is not None
    return match.group(1)


def test_communications_migration_contains_the_seed_script_verbatim(repo_root: Path) -> None:
    migration = (repo_root / "src/lqs/db/migrations/0003_communications.sql").read_text("utf-8")
    assert _seed_sql(repo_root).strip() in migration


def test_seed_script_run_by_hand_builds_the_table_lqs_expects(
    migrated_copy: MigratedFactory, repo_root: Path
) -> None:
    """The contract the other way round: the seed pasted into an editor, as its note says,
    yields exactly the communications table that schema.json (and so verify) demands,
    but for the triggers LQS adds to it: the statistics rollup's (migration 0018), which
    log the hours a statement changed and alter no column, check or index."""
    url = migrated_copy()
    with connect(url) as conn:
        conn.execute(b"DROP TABLE public.communications CASCADE")
        conn.execute(b"DROP FUNCTION public.update_communications_updated_at()")
        conn.execute(_seed_sql(repo_root).encode())
        live = read_schema(conn)["tables"]["communications"]
    expected = load_expected_schema()["tables"]["communications"]
    added = {
        name for name in expected["triggers"] if name.startswith("trigger_communications_stats_")
    }
    assert added == {f"trigger_communications_stats_{op}" for op in ("insert", "update", "delete")}
    expected["triggers"] = {k: v for k, v in expected["triggers"].items() if k not in added}
    assert json.dumps(live, sort_keys=True) == json.dumps(expected, sort_keys=True)
