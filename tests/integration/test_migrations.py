"""The migration runner against a real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from lqs.db.connection import connect
from lqs.db.errors import MigrationDrift, MigrationError
from lqs.db.migrate import MIGRATION_LOCK_KEY, Migration, load_migrations, migrate, read_applied
from lqs.db.verify import verify
from tests.conftest import DatabaseFactory, direct_url


def _write(folder: Path, filename: str, sql: str) -> None:
    (folder / filename).write_text(sql, encoding="utf-8")


def _table_exists(url: str, name: str) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def test_fresh_database_migrates_and_verifies(empty_db: str) -> None:
    with connect(empty_db) as conn:
        applied = migrate(conn)
        report = verify(conn)
    assert [m.filename for m in applied] == [m.filename for m in load_migrations()]
    assert report.problems == []
    assert len(report.seed_rows) == 24


def test_second_migrate_is_a_no_op(empty_db: str) -> None:
    with connect(empty_db) as conn:
        migrate(conn)
        before = read_applied(conn)
        again = migrate(conn)
        after = read_applied(conn)
    assert again == []
    assert after == before


def _lqs_env(url: str) -> dict[str, str]:
    """The environment of an ``lqs`` process using ``url`` (and its direct URL for migrations)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LQS_")}
    env.update(LQS_DATABASE_URL=url, LQS_DIRECT_DATABASE_URL=direct_url(url))
    if pooler := os.environ.get("LQS_DATABASE_POOLER"):
        env["LQS_DATABASE_POOLER"] = pooler
    return env


def test_concurrent_migrate_processes_apply_each_migration_once(empty_db: str) -> None:
    env = _lqs_env(empty_db)
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "lqs", "db", "migrate"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in processes]

    assert [p.returncode for p in processes] == [0, 0, 0], outputs
    combined = "".join(out for out, _ in outputs)
    for migration in load_migrations():
        assert combined.count(f"applied {migration.filename}") == 1
    with connect(empty_db) as conn:
        assert [a.version for a in read_applied(conn)] == [m.version for m in load_migrations()]
        assert verify(conn).ok


def test_edited_applied_migration_is_refused_and_nothing_else_runs(
    empty_db: str, tmp_path: Path
) -> None:
    _write(tmp_path, "0001_first.sql", "CREATE TABLE public.first (id int);")
    with connect(empty_db) as conn:
        migrate(conn, load_migrations(tmp_path))
    _write(tmp_path, "0001_first.sql", "CREATE TABLE public.first (id bigint);")
    _write(tmp_path, "0002_second.sql", "CREATE TABLE public.second (id int);")

    with (
        connect(empty_db) as conn,
        pytest.raises(MigrationDrift, match=r"0001_first\.sql was edited"),
    ):
        migrate(conn, load_migrations(tmp_path))
    assert not _table_exists(empty_db, "public.second")


def test_applied_migration_with_missing_file_is_refused(empty_db: str, tmp_path: Path) -> None:
    _write(tmp_path, "0001_first.sql", "CREATE TABLE public.first (id int);")
    _write(tmp_path, "0002_second.sql", "CREATE TABLE public.second (id int);")
    with connect(empty_db) as conn:
        migrate(conn, load_migrations(tmp_path))
    (tmp_path / "0002_second.sql").unlink()

    with (
        connect(empty_db) as conn,
        pytest.raises(MigrationDrift, match=r"0002_second\.sql .* missing"),
    ):
        migrate(conn, load_migrations(tmp_path))


def test_failing_migration_leaves_nothing_half_applied(empty_db: str, tmp_path: Path) -> None:
    _write(tmp_path, "0001_good.sql", "CREATE TABLE public.good (id int);")
    _write(
        tmp_path,
        "0002_bad.sql",
        "CREATE TABLE public.half (id int);\nINSERT INTO public.half VALUES (1);\nSELEC oops;",
    )
    _write(tmp_path, "0003_later.sql", "CREATE TABLE public.later (id int);")

    with connect(empty_db) as conn:
        with pytest.raises(MigrationError, match=r"0002_bad.sql failed and was rolled back"):
            migrate(conn, load_migrations(tmp_path))
        recorded = [a.version for a in read_applied(conn)]

    assert recorded == [1]
    assert _table_exists(empty_db, "public.good")
    assert not _table_exists(empty_db, "public.half")
    assert not _table_exists(empty_db, "public.later")


def test_fixed_migration_applies_after_a_failure(empty_db: str, tmp_path: Path) -> None:
    _write(tmp_path, "0001_bad.sql", "CREATE TABLE public.t (id int); SELEC oops;")
    with connect(empty_db) as conn, pytest.raises(MigrationError):
        migrate(conn, load_migrations(tmp_path))
    _write(tmp_path, "0001_bad.sql", "CREATE TABLE public.t (id int);")

    with connect(empty_db) as conn:
        applied = migrate(conn, load_migrations(tmp_path))
    assert [m.version for m in applied] == [1]


_SUPABASE_AUTH = """
CREATE SCHEMA auth;
CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE SET search_path = '' AS $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;
CREATE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE SET search_path = '' AS $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;
CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE SET search_path = '' AS $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;
COMMENT ON FUNCTION auth.uid() IS 'owned by Supabase';
CREATE TABLE auth.users (id uuid PRIMARY KEY);
"""

_AUTH_STATE = """
SELECT p.proname, pg_get_functiondef(p.oid), obj_description(p.oid, 'pg_proc'), p.oid
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'auth' ORDER BY p.proname
"""

_ROLE_STATE = """
SELECT rolname, rolinherit, rolcanlogin, rolbypassrls, rolsuper FROM pg_roles
WHERE rolname IN ('anon', 'authenticated', 'service_role') ORDER BY rolname
"""


def test_existing_supabase_auth_objects_and_roles_are_left_untouched(
    make_database: DatabaseFactory,
) -> None:
    url = make_database()
    with connect(url) as conn:
        conn.execute(_SUPABASE_AUTH.encode())
        auth_before = conn.execute(_AUTH_STATE).fetchall()
        roles_before = conn.execute(_ROLE_STATE).fetchall()
        migrate(conn)
        auth_after = conn.execute(_AUTH_STATE).fetchall()
        roles_after = conn.execute(_ROLE_STATE).fetchall()
        users_kept = conn.execute("SELECT to_regclass('auth.users') IS NOT NULL").fetchone()
        report = verify(conn)

    assert auth_after == auth_before  # same definitions, comments and oids: never replaced
    assert roles_after == roles_before
    assert users_kept == (True,)
    assert report.ok, report.problems


def test_migrate_waits_a_bounded_time_for_the_lock_and_names_its_holder(empty_db: str) -> None:
    url = direct_url(empty_db)
    with psycopg.connect(url, autocommit=True, application_name="deploy-7") as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        started = time.monotonic()
        with connect(url) as conn, pytest.raises(MigrationError) as refused:
            migrate(conn, lock_timeout=0.5)
        waited = time.monotonic() - started
        pid = holder.info.backend_pid

    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(
        "another migration has held the migration lock for over 0.5 s "
        f"(LQS_MIGRATION_LOCK_TIMEOUT); it is held by backend pid {pid} "
        "(application 'deploy-7', client "
    )
    assert ", state idle since " in message
    assert f"SELECT pg_terminate_backend({pid})" in message
    assert 0.5 <= waited < 5
    with connect(url) as conn:
        assert read_applied(conn) == []
        assert migrate(conn, lock_timeout=0.5)  # released with the holder's session


def _lqs(url: str, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lqs", *args],
        env={**_lqs_env(url), **settings},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_lqs_db_migrate_gives_up_after_the_lock_timeout_setting(empty_db: str) -> None:
    with psycopg.connect(direct_url(empty_db), autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        result = _lqs(empty_db, "db", "migrate", LQS_MIGRATION_LOCK_TIMEOUT="1")
        pid = holder.info.backend_pid

    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: another migration has held the migration lock for over 1 s")
    assert f"backend pid {pid}" in lines[0]


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_a_bad_lock_timeout_setting_is_named(empty_db: str, value: str) -> None:
    result = _lqs(empty_db, "db", "migrate", LQS_MIGRATION_LOCK_TIMEOUT=value)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: LQS_MIGRATION_LOCK_TIMEOUT: ")


def test_migrate_needs_an_autocommit_connection(empty_db: str) -> None:
    with connect(empty_db, autocommit=False) as conn, pytest.raises(ValueError, match="autocommit"):
        migrate(conn)


def test_shipped_migrations_are_numbered_without_gaps() -> None:
    versions = [m.version for m in load_migrations()]
    assert versions == list(range(1, len(versions) + 1))


def test_migration_checksum_changes_with_content() -> None:
    a = Migration(1, "x", "SELECT 1;")
    b = Migration(1, "x", "SELECT 2;")
    assert a.checksum != b.checksum
