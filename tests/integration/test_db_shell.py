"""``lqs db shell``: psql on LQS's database, through the real entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer import Exit

from lqs.cli.db import find_psql
from lqs.db.migrate import load_migrations
from tests.conftest import pooler_env


def _shell(stdin: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    merged = {k: v for k, v in os.environ.items() if not k.startswith("LQS_")}
    merged.update(env)
    merged.update(pooler_env(merged.get("LQS_DATABASE_URL")))
    return subprocess.run(
        [sys.executable, "-m", "lqs", "db", "shell"],
        input=stdin,
        env=merged,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_db_shell_runs_psql_on_the_configured_database(migrated_db: str) -> None:
    result = _shell(
        "SELECT count(*) AS n FROM public.schema_migrations_check;\n"
        "SELECT 'lqs-' || count(*) FROM lqs.schema_migrations;\n",
        {"LQS_DATABASE_URL": migrated_db},
    )
    # The first statement fails (no such table) and psql goes on, as it does at a prompt.
    assert "schema_migrations_check" in result.stderr
    assert f"lqs-{len(load_migrations())}" in result.stdout  # one row per applied migration
    assert result.returncode == 0


def test_db_shell_on_a_url_prints_no_warning_without_xdg_runtime_dir(
    migrated_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    result = _shell("SELECT 'quiet';\n", {"LQS_DATABASE_URL": migrated_db})
    assert result.returncode == 0, result.stderr
    assert "quiet" in result.stdout
    assert result.stderr == ""  # platformdirs' RuntimeDirWarning came through pgserver's import


def test_db_shell_starts_the_embedded_server_when_no_url_is_set(tmp_path: Path) -> None:
    result = _shell("SELECT 'embedded ' || current_user;\n", {"LQS_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "embedded " in result.stdout


def test_db_shell_exits_with_psqls_code(migrated_db: str) -> None:
    result = _shell("\\set ON_ERROR_STOP on\nSELECT 1/0;\n", {"LQS_DATABASE_URL": migrated_db})
    assert "division by zero" in result.stderr
    assert result.returncode == 3  # psql: an error stopped the script


def test_psql_on_path_is_used_when_the_embedded_one_is_missing(tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "psql"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", str(fake.parent))
        assert find_psql(tmp_path / "missing" / "psql") == str(fake)


def test_no_psql_anywhere_is_one_actionable_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", str(tmp_path))
        with pytest.raises(Exit) as stopped:
            find_psql(tmp_path / "missing" / "psql")
    assert stopped.value.exit_code == 1
    assert "psql was not found" in capsys.readouterr().err
