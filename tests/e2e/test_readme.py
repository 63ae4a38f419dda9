"""The README as a newcomer follows it: its shell blocks, run top to bottom, as written.

The blocks (:mod:`tests.readme_blocks`: which run, which a marker skips) run in ONE bash
session (``set -euo pipefail``) in a scratch copy of the repository's folder: ``docs/``
copied, ``.venv`` the virtualenv these tests run in. The database is a fresh, never
migrated one (``LQS_DATABASE_URL``). Only the ports change: the API's 8000 and the
simulator's 8025 become free ports, in the blocks and in the ``docs/examples`` files they
read. Nothing else is set for the blocks: a variable a command needs is one the README
exports. Background jobs (``lqs serve ... &``) are stopped when the session ends; a failure
names the README line of the command that failed and shows the session's output.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import DatabaseFactory, pooler_env
from tests.e2e.conftest import free_port
from tests.readme_blocks import session_script, shell_blocks, with_ports

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 180  # seconds; the session takes about 20


def _scratch_repository(tmp_path: Path, api_port: int, simulator_port: int) -> Path:
    """The repository's folder as the README's commands see it: ``docs/`` (the examples
    with their ports replaced) and ``.venv``, the virtualenv running these tests."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", repo / "docs")
    for path in (repo / "docs" / "examples").rglob("*"):
        if path.is_file() and path.suffix in {".yaml", ".yml", ".json", ".html", ".txt"}:
            path.write_text(with_ports(path.read_text("utf-8"), api_port, simulator_port))
    venv = Path(sys.executable).parent.parent  # not resolved: .venv/bin/python is a link
    if (venv / "bin" / "activate").is_file():
        (repo / ".venv").symlink_to(venv, target_is_directory=True)
    else:  # an interpreter outside a virtualenv: an activate that puts it first on PATH
        (repo / ".venv" / "bin").mkdir(parents=True)
        (repo / ".venv" / "bin" / "activate").write_text(
            f'export PATH="{Path(sys.executable).parent}:$PATH"\n'
        )
    return repo


def test_every_shell_block_of_the_readme_runs_as_written(
    make_database: DatabaseFactory, tmp_path: Path
) -> None:
    markdown = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = shell_blocks(markdown, ROOT)
    assert any(b.skip is None for b in blocks), "every shell block of the README is skipped"
    api_port = free_port()
    simulator_port = free_port()
    while simulator_port == api_port:
        simulator_port = free_port()
    repo = _scratch_repository(tmp_path, api_port, simulator_port)
    script = tmp_path / "readme.sh"
    script.write_text(with_ports(session_script(markdown, blocks), api_port, simulator_port))
    database_url = make_database()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LQS_", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["LQS_DATABASE_URL"] = database_url
    env.update(pooler_env(database_url))  # CI's third pass: through PgBouncer

    started = time.monotonic()
    process = subprocess.Popen(
        ["bash", str(script)],
        cwd=repo,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a process group of its own: killed whole below
    )
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"the README's commands did not finish in {TIMEOUT} s:\n{output[-20_000:]}")
    finally:
        # Whatever a block left running that the session's trap did not stop.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    elapsed = time.monotonic() - started

    assert process.returncode == 0, f"the README's commands failed:\n{output[-20_000:]}"
    skipped = "; ".join(f"line {b.first_line - 1}: {b.skip}" for b in blocks if b.skip)
    print(f"README: {sum(b.skip is None for b in blocks)} shell blocks ran in {elapsed:.1f} s;"
          f" skipped: {skipped}")  # fmt: skip
