"""A database LQS's migrations were never applied to: every command says so in one line,
naming ``lqs db migrate`` and the database, instead of an ``UndefinedTable`` traceback."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from lqs.db.connection import describe_url
from tests.integration.test_cli import run_lqs

_NO_CLIENT_ID = "00000000-0000-0000-0000-000000000001"

_COMMANDS = [
    ("clients", "create", "Acme", "--slug", "acme"),
    ("clients", "list"),
    ("keys", "create", "--client", "acme"),
    ("keys", "list", "--client", "acme"),
    ("templates", "put", "--client", "acme", "--id", "lead_qualified", "--body-file",
     "{body}", "--subject", "Hi"),
    ("templates", "list", "--client", "acme"),
    ("templates", "show", "--client", "acme", "--id", "lead_qualified"),
    ("templates", "preview", "--client", "acme", "--id", "lead_qualified", "--sample"),
    ("clients", "show", "acme"),
    ("stats",),
    ("stats", "--client", "acme", "--since", "7d"),
    ("leads", "import", "{csv}", "--client", "acme"),
    ("comms", "list"),
    ("comms", "show", _NO_CLIENT_ID),
    ("comms", "retry", _NO_CLIENT_ID),
    ("push", "list", "--client", "acme"),
    ("suppressions", "list", "--client", "acme"),
    ("suppressions", "add", "ann@example.com", "--client", "acme"),
    ("users", "add", "--client", "acme", "--email", "ann@example.com"),
    ("users", "list"),
    ("users", "disable", "ann@example.com"),
    ("worker", "--once"),
    ("worker",),
    ("serve", "--port", "0"),
    ("db", "verify"),
    ("retention", "set", "acme", "--content-days", "30"),
    ("retention", "run"),
    ("retention", "run", "--client", "acme", "--dry-run"),
    ("leads", "export-subject", "--client", "acme", "--email", "ann@example.com"),
]  # fmt: skip


def _expected(database: str) -> list[str]:
    return [f"error: this database is not migrated: run `lqs db migrate` (database: {database})"]


@pytest.mark.parametrize("command", _COMMANDS, ids=" ".join)
def test_every_command_on_an_unmigrated_database_says_to_migrate_it(
    command: tuple[str, ...], empty_db: str, tmp_path: Path
) -> None:
    body, csv = tmp_path / "body.txt", tmp_path / "leads.csv"
    body.write_text("Hello {{ lead.first_name }}")
    csv.write_text("email\nann@example.com\n")
    args = [a.format(body=body, csv=csv) for a in command]

    result = run_lqs(*args, env={"LQS_DATABASE_URL": empty_db})

    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == _expected(describe_url(empty_db) or empty_db)


def test_the_embedded_database_is_named_by_its_data_directory(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    result = run_lqs("clients", "list", env={"LQS_DATA_DIR": str(data_dir)})

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == _expected(f"embedded at {data_dir.resolve()}")


def test_the_password_is_not_shown(empty_db: str) -> None:
    # The test server trusts local connections: any password gets in.
    url = psycopg.conninfo.make_conninfo(empty_db, password="s3cret-pw")

    result = run_lqs("clients", "list", env={"LQS_DATABASE_URL": url})

    assert result.returncode == 1
    assert "this database is not migrated" in result.stderr
    assert "s3cret-pw" not in result.stderr


def test_a_table_missing_from_a_migrated_database_is_a_bug_not_a_pending_migration(
    empty_db: str,
) -> None:
    env = {"LQS_DATABASE_URL": empty_db}
    assert run_lqs("db", "migrate", env=env).returncode == 0
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("DROP TABLE public.communications CASCADE")

    result = run_lqs("comms", "list", env=env)

    assert result.returncode == 1
    assert "not migrated" not in result.stderr
    assert "UndefinedTable" in result.stderr
