"""A project that ships LQS with the Supabase CLI: export, `supabase db push`, then `lqs db`.

``supabase_db_push`` does what the CLI does (supabase/cli ``pkg/migration``: ``apply.go``
``FindPendingMigrations`` and ``ApplyMigrations``, ``history.go`` ``CreateMigrationTable``,
``file.go`` ``ExecBatch``): it refuses local files older than the newest remote version
and remote versions with no local file, creates the history table as the CLI does
(``version`` only, then the ``statements`` and ``name`` columns), and applies each
pending file in one transaction followed by its history row. One difference: the CLI
splits a file into statements (comments kept, so the first starts with the file's first
line) and sends them one by one; this sends the file as one script and records it as one
statement, which is the same first statement for what LQS reads of it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from lqs.db.connection import connect
from lqs.db.migrate import Migration, load_migrations, migrate, read_applied, read_history
from lqs.db.supabase_cli import export_supabase
from lqs.db.verify import verify
from tests.conftest import DatabaseFactory, direct_url

_CLI_FILENAME = re.compile(r"^([0-9]+)_(.*)\.sql$")

# supabase/cli pkg/migration/history.go, CreateMigrationTable, in its order.
_CREATE_HISTORY = (
    "SET lock_timeout = '4s'",
    "CREATE SCHEMA IF NOT EXISTS supabase_migrations",
    "CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations"
    " (version text NOT NULL PRIMARY KEY)",
    "ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS statements text[]",
    "ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS name text",
)
_INSERT_HISTORY = (
    "INSERT INTO supabase_migrations.schema_migrations(version, name, statements)"
    " VALUES(%s, %s, %s)"
)

# A project's own migrations: one before LQS arrives, one after (a day after LQS's files).
_USERS_FIRST = "20260301120000_create_notes.sql", "CREATE TABLE public.notes (id bigint);\n"
_USERS_LATER = "add_note_body.sql", "ALTER TABLE public.notes ADD body text;\n"


class PushRefused(Exception):
    """The CLI's refusal: the message it prints."""


def supabase_db_push(url: str, project: Path) -> list[str]:
    """Apply ``project``'s pending migration files as ``supabase db push``; return their names."""
    folder = project / "supabase" / "migrations"
    local = sorted(p.name for p in folder.iterdir() if _CLI_FILENAME.match(p.name))
    # The CLI connects with a session of its own: the direct URL.
    with psycopg.connect(direct_url(url), autocommit=True) as conn:
        exists = conn.execute(
            "SELECT to_regclass('supabase_migrations.schema_migrations') IS NOT NULL"
        ).fetchone()
        remote = (
            [
                v
                for (v,) in conn.execute(
                    "SELECT version FROM supabase_migrations.schema_migrations ORDER BY version"
                )
            ]
            if exists and exists[0]
            else []
        )
        local_versions = [_version(name) for name in local]
        if missing := [v for v in remote if v not in local_versions]:
            raise PushRefused(f"Remote migration versions not found in local: {missing}")
        pending = [n for n in local if _version(n) not in remote]
        if remote and (early := [n for n in pending if _version(n) < remote[-1]]):
            raise PushRefused(f"Found local migration files to be inserted before: {early}")
        if pending:
            for statement in _CREATE_HISTORY:
                conn.execute(statement.encode())
        for filename in pending:
            conn.execute(b"RESET ALL")
            text = (folder / filename).read_text(encoding="utf-8")
            match = _CLI_FILENAME.match(filename)
            assert match is not None
            with conn.transaction():
                conn.execute(text.encode())
                conn.execute(_INSERT_HISTORY, (match[1], match[2], [text.strip()]))
    return pending


def _version(filename: str) -> str:
    match = _CLI_FILENAME.match(filename)
    assert match is not None
    return match[1]


def _write(project: Path, filename: str, sql: str) -> None:
    folder = project / "supabase" / "migrations"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / filename).write_text(sql, encoding="utf-8")


def run_lqs(*args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LQS_")}
    env["COLUMNS"] = "200"
    if url is not None:
        env["LQS_DATABASE_URL"] = url
        env["LQS_DIRECT_DATABASE_URL"] = direct_url(url)
        if pooler := os.environ.get("LQS_DATABASE_POOLER"):
            env["LQS_DATABASE_POOLER"] = pooler
    return subprocess.run(
        [sys.executable, "-m", "lqs", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_pushed_export_after_the_projects_own_migration_is_applied_for_lqs(
    supabase_empty_db: str, tmp_path: Path
) -> None:
    url = supabase_empty_db
    _write(tmp_path, *_USERS_FIRST)
    supabase_db_push(url, tmp_path)

    exported = run_lqs("db", "export-supabase", str(tmp_path), url=url)
    pushed = supabase_db_push(url, tmp_path)
    status = run_lqs("db", "status", url=url)
    migrated = run_lqs("db", "migrate", url=url)
    with connect(url) as conn:
        report = verify(conn)
        lqs_record = read_applied(conn)

    shipped = load_migrations()
    assert exported.returncode == 0, exported.stderr
    assert all(_version(n) > _version(_USERS_FIRST[0]) for n in pushed)
    assert [n.split("_", 1)[1] for n in pushed] == [
        f"lqs_{m.version:04d}_{m.name}.sql" for m in shipped
    ]
    assert status.returncode == 0, status.stdout + status.stderr
    assert "pending" not in status.stdout
    assert status.stdout.count("applied") >= len(shipped)
    assert migrated.returncode == 0, migrated.stderr
    assert "Database is up to date." in migrated.stdout
    assert report.ok, report.problems
    assert lqs_record == []  # nothing re-applied or recorded twice


def test_reexport_is_stable_and_a_new_lqs_migration_follows_the_projects_newer_one(
    supabase_empty_db: str, tmp_path: Path
) -> None:
    url = supabase_empty_db
    shipped = load_migrations()
    _write(tmp_path, *_USERS_FIRST)
    first = [p.name for p in export_supabase(tmp_path, shipped)]
    supabase_db_push(url, tmp_path)
    a_day_later = datetime.strptime(_version(first[-1]), "%Y%m%d%H%M%S") + timedelta(days=1)
    users_later = f"{a_day_later:%Y%m%d%H%M%S}_{_USERS_LATER[0]}"
    _write(tmp_path, users_later, _USERS_LATER[1])
    supabase_db_push(url, tmp_path)
    newer = Migration(len(shipped) + 1, "next_release", "CREATE TABLE public.lqs_next (id int);")

    second = [p.name for p in export_supabase(tmp_path, [*shipped, newer])]
    pushed = supabase_db_push(url, tmp_path)
    with connect(direct_url(url)) as conn:
        history = read_history(conn, [*shipped, newer])
        applied_now = migrate(conn, [*shipped, newer])

    assert second[: len(first)] == first
    assert pushed == [second[-1]]
    assert _version(second[-1]) > _version(users_later)
    assert second[-1].endswith(f"_lqs_{newer.version:04d}_next_release.sql")
    assert [a.version for a in history] == [m.version for m in [*shipped, newer]]
    assert applied_now == []


def test_migrate_applies_only_what_the_push_did_not(supabase_empty_db: str, tmp_path: Path) -> None:
    url = supabase_empty_db
    shipped = load_migrations()
    paths = export_supabase(tmp_path, shipped)
    for path in paths[3:]:
        path.unlink()
    supabase_db_push(url, tmp_path)

    with connect(direct_url(url)) as conn:
        applied = migrate(conn)
        again = migrate(conn)
        recorded = [a.version for a in read_applied(conn)]
        history = [a.version for a in read_history(conn)]
        report = verify(conn)

    assert [m.version for m in applied] == [m.version for m in shipped[3:]]
    assert again == []
    assert recorded == [m.version for m in shipped[3:]]
    assert history == [m.version for m in shipped]
    assert report.ok, report.problems


def test_files_of_the_first_export_scheme_pushed_by_an_older_cli_count_as_applied(
    supabase_empty_db: str, tmp_path: Path
) -> None:
    url = supabase_empty_db
    shipped = load_migrations()
    # What the first scheme wrote: the seed's date, the LQS version as the time.
    for path in export_supabase(tmp_path, shipped):
        match = re.fullmatch(r"\d{14}_lqs_(\d{4})_(.*)", path.name)
        assert match is not None
        path.rename(path.with_name(f"20250906{int(match[1]):06d}_{match[2]}"))
    supabase_db_push(url, tmp_path)
    with connect(url) as conn:
        # An older CLI recorded the version only.
        conn.execute(
            b"ALTER TABLE supabase_migrations.schema_migrations DROP COLUMN name,"
            b" DROP COLUMN statements"
        )
        history = [a.version for a in read_history(conn)]
        report = verify(conn)
    names_before = sorted(p.name for p in (tmp_path / "supabase" / "migrations").iterdir())

    names_after = sorted(p.name for p in export_supabase(tmp_path, shipped))

    assert history == [m.version for m in shipped]
    assert report.ok, report.problems
    assert names_after == names_before
    assert all(name.startswith("20250906") for name in names_after)


def test_a_pushed_export_of_an_edited_migration_is_drift(
    supabase_empty_db: str, tmp_path: Path
) -> None:
    url = supabase_empty_db
    shipped = load_migrations()
    edited = [*shipped[:-1], Migration(shipped[-1].version, shipped[-1].name, "SELECT 1;")]
    export_supabase(tmp_path, edited)
    supabase_db_push(url, tmp_path)

    status = run_lqs("db", "status", url=url)
    migrated = run_lqs("db", "migrate", url=url)

    assert status.returncode == 1
    assert "edited" in status.stdout
    assert migrated.returncode == 1
    assert f"{shipped[-1].filename} was edited after it was applied" in migrated.stderr


def test_export_refuses_a_bad_after_in_one_line(tmp_path: Path) -> None:
    result = run_lqs("db", "export-supabase", str(tmp_path), "--after", "2026-03-01")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: --after '2026-03-01' is not a migration version: expected YYYYMMDDHHMMSS, "
        "e.g. 20260301120000 (the newest version in supabase/migrations)"
    ]
    assert not (tmp_path / "supabase").exists()


def test_export_after_a_given_version(tmp_path: Path) -> None:
    result = run_lqs("db", "export-supabase", str(tmp_path), "--after", "20301231235959")
    names = sorted(p.name for p in (tmp_path / "supabase" / "migrations").iterdir())
    assert result.returncode == 0, result.stderr
    assert names[0] == "20310101000000_lqs_0001_supabase_compat.sql"


def test_export_where_the_folder_cannot_be_made_fails_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "supabase").mkdir()
    (tmp_path / "supabase" / "migrations").write_text("a file, not a folder")
    result = run_lqs("db", "export-supabase", str(tmp_path))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1
    assert len(lines) == 1
    assert lines[0].startswith("error: cannot write Supabase migrations to ")


def test_export_with_two_files_for_one_migration_fails_in_one_line(tmp_path: Path) -> None:
    export_supabase(tmp_path, load_migrations())
    folder = tmp_path / "supabase" / "migrations"
    first = sorted(folder.iterdir())[0]
    (folder / "20250906000001_supabase_compat.sql").write_text(first.read_text("utf-8"))
    result = run_lqs("db", "export-supabase", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: supabase/migrations has two files for LQS migration 0001: "
        f"20250906000001_supabase_compat.sql and {first.name}; delete the one never pushed"
    ]


# What a new Supabase project's database has in `auth` before its auth service first runs
# (supabase/postgres: migrations/db/init-scripts/00000000000001-auth-schema.sql and
# migrations/db/migrations/20211124212715_update-auth-owner.sql), on top of
# ``supabase_empty_db``'s roles and default privileges.
_SUPABASE_INIT_AUTH = """
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'supabase_admin') THEN
        CREATE ROLE supabase_admin NOLOGIN;
    END IF;
END
$roles$;
CREATE SCHEMA IF NOT EXISTS auth AUTHORIZATION supabase_admin;
create or replace function auth.uid() returns uuid as $$
  select nullif(current_setting('request.jwt.claim.sub', true), '')::uuid;
$$ language sql stable;
create or replace function auth.role() returns text as $$
  select nullif(current_setting('request.jwt.claim.role', true), '')::text;
$$ language sql stable;
create or replace function auth.email() returns text as $$
  select nullif(current_setting('request.jwt.claim.email', true), '')::text;
$$ language sql stable;
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
GRANT ALL PRIVILEGES ON SCHEMA auth TO supabase_auth_admin;
ALTER FUNCTION auth.uid owner to supabase_auth_admin;
ALTER FUNCTION auth.role owner to supabase_auth_admin;
ALTER FUNCTION auth.email owner to supabase_auth_admin;
"""

# Supabase Auth's own migrations, as it runs them (as supabase_auth_admin, namespace auth):
# supabase/auth migrations/20220224000811_update_auth_functions.up.sql and
# 20220531120530_add_auth_jwt_function.up.sql.
_AUTH_SERVICE_MIGRATIONS = """
create or replace function auth.uid() returns uuid language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;
create or replace function auth.role() returns text language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;
create or replace function auth.email() returns text language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.email', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
  )::text
$$;
comment on function auth.uid() is 'Deprecated. Use auth.jwt() -> ''sub'' instead.';
comment on function auth.role() is 'Deprecated. Use auth.jwt() -> ''role'' instead.';
comment on function auth.email() is 'Deprecated. Use auth.jwt() -> ''email'' instead.';
create or replace function auth.jwt() returns jsonb language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;
"""

# The start of Supabase Auth's first migration (00_init_auth_schema.up.sql), for a
# database where LQS created `auth` because nothing had.
_AUTH_SERVICE_INIT = """
CREATE TABLE IF NOT EXISTS auth.users (instance_id uuid NULL, id uuid NOT NULL PRIMARY KEY);
CREATE TABLE IF NOT EXISTS auth.schema_migrations (version varchar(255) NOT NULL PRIMARY KEY);
create or replace function auth.email() returns text as $$
  select nullif(current_setting('request.jwt.claim.email', true), '')::text;
$$ language sql stable;
"""

_AUTH_OWNERS = """
SELECT p.proname, pg_get_userbyid(p.proowner) FROM pg_proc p
WHERE p.pronamespace = 'auth'::regnamespace ORDER BY p.proname
"""


def _run_as_auth_service(url: str, script: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute(b"SET LOCAL ROLE supabase_auth_admin")
        conn.execute(script.encode())


def test_supabase_auth_migrations_still_run_after_lqs_migrated_first(
    supabase_empty_db: str,
) -> None:
    url = supabase_empty_db
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_SUPABASE_INIT_AUTH.encode())
    with connect(direct_url(url)) as conn:
        migrate(conn)
        jwt_after_lqs = conn.execute("SELECT to_regprocedure('auth.jwt()')").fetchone()

    _run_as_auth_service(url, _AUTH_SERVICE_MIGRATIONS)

    with connect(url) as conn:
        owners = conn.execute(_AUTH_OWNERS).fetchall()
        report = verify(conn)
    assert jwt_after_lqs == (None,)
    assert owners == [(name, "supabase_auth_admin") for name in ("email", "jwt", "role", "uid")]
    assert report.ok, report.problems


def test_what_lqs_creates_in_a_missing_auth_schema_is_the_auth_services(
    supabase_empty_db: str,
) -> None:
    url = supabase_empty_db
    with connect(direct_url(url)) as conn:
        migrate(conn)
        schema_owner = conn.execute(
            "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'auth'"
        ).fetchone()
        owners = conn.execute(_AUTH_OWNERS).fetchall()

    _run_as_auth_service(url, _AUTH_SERVICE_INIT + _AUTH_SERVICE_MIGRATIONS)

    with connect(url) as conn:
        report = verify(conn)
    assert schema_owner == ("supabase_auth_admin",)
    assert owners == [("role", "supabase_auth_admin"), ("uid", "supabase_auth_admin")]
    assert report.ok, report.problems


def test_plain_postgres_gets_only_the_auth_functions_lqs_uses(empty_db: str) -> None:
    with connect(direct_url(empty_db)) as conn:
        migrate(conn)
        functions = conn.execute(
            "SELECT proname FROM pg_proc WHERE pronamespace = 'auth'::regnamespace ORDER BY proname"
        ).fetchall()
    assert functions == [("role",), ("uid",)]


@pytest.mark.parametrize("scheme", ["first", "current"])
def test_history_reader_ignores_a_project_without_lqs_rows(
    make_database: DatabaseFactory, tmp_path: Path, scheme: str
) -> None:
    url = make_database()
    _write(tmp_path, *_USERS_FIRST)
    _write(tmp_path, f"20260302120000_{_USERS_LATER[0]}", _USERS_LATER[1])
    supabase_db_push(url, tmp_path)
    with connect(url) as conn:
        if scheme == "first":
            conn.execute(
                b"ALTER TABLE supabase_migrations.schema_migrations DROP COLUMN name,"
                b" DROP COLUMN statements"
            )
        assert read_history(conn) == []


# What LQS's first 0001 made in a database without `auth`: the schema and three functions,
# all owned by the migrating role (auth.jwt() included, though LQS never used it).
_OLD_0001_AUTH = """
CREATE SCHEMA auth;
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE SET search_path = '' AS $fn$
    SELECT (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')::uuid
$fn$;
CREATE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE SET search_path = '' AS $fn$
    SELECT nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role'
$fn$;
CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE SET search_path = '' AS $fn$
    SELECT nullif(current_setting('request.jwt.claims', true), '')::jsonb
$fn$;
"""


def test_auth_objects_an_earlier_lqs_created_are_handed_to_the_auth_service(
    supabase_empty_db: str,
) -> None:
    url = supabase_empty_db
    with psycopg.connect(direct_url(url), autocommit=True) as conn:
        conn.execute(_OLD_0001_AUTH.encode())
    with connect(direct_url(url)) as conn:
        migrate(conn)
        schema_owner = conn.execute(
            "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'auth'"
        ).fetchone()
        owners = conn.execute(_AUTH_OWNERS).fetchall()

    # Before migration 0009 this failed with "must be owner of function jwt".
    _run_as_auth_service(url, _AUTH_SERVICE_INIT + _AUTH_SERVICE_MIGRATIONS)

    with connect(url) as conn:
        report = verify(conn)
    assert schema_owner == ("supabase_auth_admin",)
    assert owners == [(name, "supabase_auth_admin") for name in ("jwt", "role", "uid")]
    assert report.ok, report.problems
