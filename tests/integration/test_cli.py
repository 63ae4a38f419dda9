"""The ``lqs`` command as a user runs it: real processes, real PostgreSQL."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import conninfo

from lqs.db.connection import connect
from lqs.db.migrate import load_migrations
from lqs.db.verify import verify
from tests.conftest import DatabaseFactory, pooler_env


def run_lqs(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    merged = {k: v for k, v in os.environ.items() if not k.startswith("LQS_")}
    merged.update(env or {})
    merged.update(pooler_env(merged.get("LQS_DATABASE_URL")))  # CI's third pass: PgBouncer
    return subprocess.run(
        [sys.executable, "-m", "lqs", *args],
        env=merged,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_migrate_status_and_verify_on_a_fresh_database(empty_db: str) -> None:
    env = {"LQS_DATABASE_URL": empty_db}

    migrated = run_lqs("db", "migrate", env=env)
    again = run_lqs("db", "migrate", env=env)
    status = run_lqs("db", "status", env=env)
    verified = run_lqs("db", "verify", env=env)

    assert migrated.returncode == 0, migrated.stderr
    assert "applied 0003_communications.sql" in migrated.stdout
    assert again.returncode == 0
    assert "up to date" in again.stdout
    assert status.returncode == 0
    assert status.stdout.count("│ applied ") == len(load_migrations())
    assert verified.returncode == 0, verified.stderr
    assert "24 rows" in verified.stdout
    assert "Schema verified" in verified.stdout


def test_verify_exits_non_zero_naming_the_dropped_index(empty_db: str) -> None:
    env = {"LQS_DATABASE_URL": empty_db}
    assert run_lqs("db", "migrate", env=env).returncode == 0
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("DROP INDEX public.idx_communications_external_id")
        conn.execute("ALTER TABLE public.profiles DISABLE ROW LEVEL SECURITY")

    result = run_lqs("db", "verify", env=env)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "drift: communications: index idx_communications_external_id is missing" in result.stderr
    assert "drift: profiles: row level security is disabled" in result.stderr


def test_verify_fails_on_a_privilege_granted_back_on_a_supabase_database(
    supabase_empty_db: str,
) -> None:
    env = {"LQS_DATABASE_URL": supabase_empty_db}
    assert run_lqs("db", "migrate", env=env).returncode == 0
    assert run_lqs("db", "verify", env=env).returncode == 0
    with psycopg.connect(supabase_empty_db, autocommit=True) as conn:
        conn.execute("GRANT ALL ON public.communications TO anon")

    result = run_lqs("db", "verify", env=env)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert (
        "drift: table public.communications: anon holds DELETE, INSERT, REFERENCES, SELECT, "
        "TRIGGER, TRUNCATE, UPDATE, which LQS does not grant" in result.stderr
    )
    assert "Schema verified" not in result.stdout


def test_unreachable_database_is_one_line_and_non_zero() -> None:
    result = run_lqs("db", "migrate", env={"LQS_DATABASE_URL": "postgresql://lqs@127.0.0.1:1/lqs"})
    assert_one_line_error(result, "cannot connect to PostgreSQL at lqs@127.0.0.1:1/lqs")


def test_unknown_role_asks_to_check_credentials(admin_url: str) -> None:
    url = conninfo.make_conninfo(admin_url, user="no_such_role", password="wrong-password")
    result = run_lqs("db", "status", env={"LQS_DATABASE_URL": url})
    assert_one_line_error(result, "check the user and password")
    assert "wrong-password" not in result.stderr


def test_unknown_database_asks_to_create_it(admin_url: str) -> None:
    url = conninfo.make_conninfo(admin_url, dbname="lqs_no_such_database")
    result = run_lqs("db", "verify", env={"LQS_DATABASE_URL": url})
    assert_one_line_error(result, "create the database")


def test_malformed_url_is_reported() -> None:
    result = run_lqs("db", "migrate", env={"LQS_DATABASE_URL": "postgresql://u:s3cret@[::1"})
    assert_one_line_error(result, "not a valid PostgreSQL URL")
    assert "s3cret" not in result.stderr


def test_unwritable_data_directory_is_reported(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run_lqs("db", "migrate", env={"LQS_DATA_DIR": str(blocker / "lqs")})
    assert_one_line_error(result, "cannot create data directory", "LQS_DATA_DIR")


def test_invalid_setting_names_the_variable() -> None:
    result = run_lqs("db", "status", env={"LQS_CONNECT_TIMEOUT": "soon"})
    assert_one_line_error(result, "LQS_CONNECT_TIMEOUT")


def test_missing_migration_file_stops_migrate_without_applying(empty_db: str) -> None:
    env = {"LQS_DATABASE_URL": empty_db}
    assert run_lqs("db", "migrate", env=env).returncode == 0
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO lqs.schema_migrations (version, name, checksum, duration_ms)"
            " VALUES (9999, 'from_the_future', 'x', 0)"
        )

    migrate_result = run_lqs("db", "migrate", env=env)
    status_result = run_lqs("db", "status", env=env)

    assert_one_line_error(migrate_result, "9999_from_the_future.sql", "file is missing")
    assert status_result.returncode == 1
    assert "missing" in status_result.stdout


def test_export_supabase_writes_cli_migrations_that_build_a_verified_schema(
    tmp_path: Path, make_database: DatabaseFactory
) -> None:
    result = run_lqs("db", "export-supabase", str(tmp_path))
    assert result.returncode == 0, result.stderr
    files = sorted((tmp_path / "supabase" / "migrations").iterdir())
    assert [f.name[14:] for f in files] == [
        f"_lqs_{m.version:04d}_{m.name}.sql" for m in load_migrations()
    ]
    assert all(re.fullmatch(r"\d{14}_[a-z0-9_]+\.sql", f.name) for f in files)

    # Apply them the way `supabase db push` does: each file, then its history row.
    url = make_database()
    with connect(url) as conn:
        conn.execute(
            b"CREATE SCHEMA supabase_migrations; CREATE TABLE supabase_migrations.schema_migrations"
            b" (version text PRIMARY KEY, statements text[], name text)"
        )
        for path in files:
            version, name = path.stem.split("_", 1)
            with conn.transaction():
                conn.execute(path.read_text("utf-8").encode())
                conn.execute(
                    "INSERT INTO supabase_migrations.schema_migrations VALUES (%s, %s, %s)",
                    (version, [path.read_text("utf-8")], name),
                )
        report = verify(conn)
    assert report.ok, report.problems


def test_export_supabase_into_an_unwritable_place_fails_cleanly(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_lqs("db", "export-supabase", str(blocker))
    assert_one_line_error(result, "cannot write Supabase migrations")


def test_demo_on_an_embedded_server_runs_the_whole_flow(tmp_path: Path) -> None:
    result = run_lqs(
        "demo", "--leads", "24", env={"LQS_DATA_DIR": str(tmp_path / "lqs"), "COLUMNS": "200"}
    )
    assert result.returncode == 0, result.stderr + result.stdout
    out = result.stdout
    assert "24 rows" in out
    assert "compliance_notes" in out
    for shown in ("Leads by outcome", "delivered", "bounced", "rejected", "Score breakdown"):
        assert shown in out
    assert "refused with 422" in out
    assert "one-click unsubscribe" in out
    # demo-acme's staff get an email, an SMS and a signed webhook for each qualified lead.
    assert "Notifications to client staff" in out
    staff = {tuple(re.split(r"\s*│\s*", line)[1:3]) for line in out.splitlines() if "│" in line}
    for channel in ("email", "sms", "webhook"):
        assert ("demo-acme", channel) in staff, out
    hooks = re.search(
        r"webhooks received by the simulator: (\d+), with a valid signature: (\d+)", out
    )
    assert hooks is not None
    assert hooks[1] == hooks[2] != "0"
    assert "Demo complete" in out
    # Reused across runs: the second start finds the data, applies nothing, and the demo's
    # clients are created afresh.
    second = run_lqs("demo", "--leads", "10", env={"LQS_DATA_DIR": str(tmp_path / "lqs")})
    assert second.returncode == 0, second.stderr + second.stdout
    assert "applied" not in second.stdout


def test_demo_against_a_configured_server(empty_db: str) -> None:
    result = run_lqs("demo", "--leads", "10", env={"LQS_DATABASE_URL": empty_db})
    assert result.returncode == 0, result.stderr + result.stdout
    with connect(empty_db) as conn:
        assert verify(conn).ok
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'delivered'),"
            " count(*) FILTER (WHERE status IN ('pending', 'sent')),"
            " count(*) FILTER (WHERE status = 'pending' AND type = 'sms' AND EXISTS ("
            "     SELECT 1 FROM public.delivery_attempts AS a"
            "     WHERE a.communication_id = c.id AND a.outcome = 'deferred'))"
            " FROM public.communications AS c"
        ).fetchone()
    assert row is not None
    assert row[0] > 0
    # Open: only the second client's SMS to its leads, deferred to their send window.
    assert row[1] == row[2] > 0
    assert "quiet hours: " in result.stdout
    # One erasure: the sample lead's, recorded without personal data, its email anonymised.
    assert "Erasure " in result.stdout
    with connect(empty_db) as conn:
        erased = conn.execute(
            "SELECT e.counts->>'leads', l.email, c.recipient, c.content, c.compliance_notes"
            " FROM public.erasures AS e JOIN public.leads AS l ON l.client_id = e.client_id"
            " JOIN public.communications AS c ON c.lead_id = l.id"
            " WHERE l.email LIKE 'erased-%%@erased.invalid'"
        ).fetchall()
    assert erased
    assert {(row[0], row[2], row[3]) for row in erased} == {("1", "erased", None)}
    assert all(row[4].startswith("erased on ") for row in erased)


def _lines_of(proc: subprocess.Popen[str]) -> queue.Queue[str | None]:
    """The process's stdout, line by line, read in a thread (None at its end)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


def _wait_for_sign_in(lines: queue.Queue[str | None], within: float) -> tuple[str, str, str]:
    """The dashboard address, email and password the demo prints, or a failure."""
    deadline = time.monotonic() + within
    seen: list[str] = []
    address = None
    while True:
        line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        assert line is not None, "the demo ended before printing how to sign in:\n" + "".join(seen)
        seen.append(line)
        if found := re.match(r"dashboard: (http://127\.0\.0\.1:\d+)/app/login$", line.strip()):
            address = found[1]
        if found := re.match(r"sign in as (\S+) with password (\S+)$", line.strip()):
            assert address is not None, "".join(seen)
            return address, found[1], found[2]


def test_demo_keep_serves_the_dashboard_until_sigint(empty_db: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LQS_")}
    env |= {"LQS_DATABASE_URL": empty_db, "COLUMNS": "200", **pooler_env(empty_db)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lqs", "demo", "--leads", "10", "--keep"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        address, email, password = _wait_for_sign_in(_lines_of(proc), within=120)
        signed_in = httpx.post(
            f"{address}/auth/login", json={"email": email, "password": password}, timeout=10
        )
        assert signed_in.status_code == 200, signed_in.text
        assert signed_in.json()["user"]["role"] == "admin"
        assert httpx.get(f"{address}/app/login", timeout=10).status_code == 200

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with pytest.raises(httpx.ConnectError):  # the API stopped with it
        httpx.get(f"{address}/healthz", timeout=5)


def test_demo_refuses_a_bad_option() -> None:
    result = run_lqs("demo", "--leads", "1")
    assert result.returncode != 0


def test_a_subfolder_uses_the_data_directory_found_above(tmp_path: Path) -> None:
    project = tmp_path / "project"
    subfolder = project / "imports" / "2026"
    subfolder.mkdir(parents=True)
    assert run_lqs("db", "migrate", cwd=project).returncode == 0

    status = run_lqs("db", "status", cwd=subfolder)

    assert status.returncode == 0, status.stderr
    assert status.stdout.count("│ applied ") == len(load_migrations())
    assert not (subfolder / ".lqs").exists()
    assert not (project / "imports" / ".lqs").exists()
