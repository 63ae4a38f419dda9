"""``lqs -v``: a command that touches the database names it on stderr, once."""

from __future__ import annotations

from pathlib import Path

from psycopg import conninfo

from tests.integration.test_cli import run_lqs


def _database_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("database: ")]


def test_verbose_names_the_configured_database_without_its_password(migrated_db: str) -> None:
    parts = conninfo.conninfo_to_dict(migrated_db)
    with_password = conninfo.make_conninfo(migrated_db, password="s3cret-pw")
    env = {"LQS_DATABASE_URL": with_password}

    result = run_lqs("-v", "clients", "list", env=env)

    assert result.returncode == 0, result.stderr
    lines = _database_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert str(parts["dbname"]) in lines[0]
    assert "s3cret-pw" not in result.stderr + result.stdout


def test_verbose_names_the_embedded_database_by_its_folder(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    result = run_lqs("--verbose", "db", "migrate", env={"LQS_DATA_DIR": str(data_dir)})

    assert result.returncode == 0, result.stderr
    assert _database_lines(result.stderr) == [f"database: embedded at {data_dir.resolve()}"]


def test_verbose_names_the_database_even_when_the_command_then_fails(migrated_db: str) -> None:
    result = run_lqs("-v", "keys", "list", "--client", "nobody-here", env={
        "LQS_DATABASE_URL": migrated_db
    })  # fmt: skip

    assert result.returncode == 1
    assert len(_database_lines(result.stderr)) == 1
    assert "nobody-here" in result.stderr.splitlines()[-1]


def test_without_verbose_nothing_names_the_database(migrated_db: str) -> None:
    result = run_lqs("clients", "list", env={"LQS_DATABASE_URL": migrated_db})

    assert result.returncode == 0, result.stderr
    assert _database_lines(result.stderr) == []


def test_a_command_without_a_database_says_nothing_of_one() -> None:
    result = run_lqs("-v", "simulate", "--help")

    assert result.returncode == 0
    assert _database_lines(result.stderr) == []
