"""``lqs serve`` says, once it accepts connections, where it listens and on which database."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
from psycopg import conninfo

from lqs.db.connection import describe_url
from tests.conftest import pooler_env
from tests.integration.test_cli import run_lqs


@contextmanager
def _serving(env: dict[str, str]) -> Iterator[str]:
    """Start ``lqs serve --port 0`` and yield its first line of output (within 60 s)."""
    merged = {k: v for k, v in os.environ.items() if not k.startswith("LQS_")}
    merged.update(env)
    merged.update(pooler_env(merged.get("LQS_DATABASE_URL")))
    process = subprocess.Popen(
        [sys.executable, "-m", "lqs", "serve", "--port", "0"],
        env=merged,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    try:
        with ThreadPoolExecutor(max_workers=1) as reader:
            yield reader.submit(process.stdout.readline).result(timeout=60).strip()
    finally:
        process.terminate()
        process.communicate(timeout=30)


def _answers(line: str) -> bool:
    url = line.removeprefix("listening on ").split(" ", 1)[0]
    return httpx.get(f"{url}/healthz", timeout=5).status_code == 200


def test_serve_prints_the_url_it_answers_on_and_the_database(migrated_db: str) -> None:
    with_password = conninfo.make_conninfo(migrated_db, password="s3cret-pw")

    with _serving({"LQS_DATABASE_URL": with_password}) as line:
        assert line.startswith("listening on http://127.0.0.1:")
        assert line.endswith(f"(database: {describe_url(migrated_db)})")
        assert "s3cret-pw" not in line
        assert _answers(line)


def test_serve_names_the_embedded_database_by_its_data_directory(tmp_path: Path) -> None:
    env = {"LQS_DATA_DIR": str(tmp_path / "data")}
    assert run_lqs("db", "migrate", env=env).returncode == 0

    with _serving(env) as line:
        assert line.endswith(f"(database: embedded at {(tmp_path / 'data').resolve()})")
        assert _answers(line)
    # Stopped by SIGTERM, it stops the embedded server it started (uvicorn would raise
    # the signal again and kill the process first: the server was left running).
    assert not (tmp_path / "data" / "pgdata" / "postmaster.pid").exists()


def test_serve_starts_on_a_database_an_upgrade_has_not_migrated_yet(empty_db: str) -> None:
    env = {"LQS_DATABASE_URL": empty_db}
    assert run_lqs("db", "migrate", env=env).returncode == 0
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute(
            "DELETE FROM lqs.schema_migrations"
            " WHERE version = (SELECT max(version) FROM lqs.schema_migrations)"
        )

    with _serving(env) as line:
        assert line.startswith("listening on http://127.0.0.1:")
        assert _answers(line)
