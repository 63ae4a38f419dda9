"""The README as a newcomer follows it: its shell blocks, run top to bottom, as written.

Every fenced ``sh`` block of README.md runs, in order, in ONE bash session
(``set -euo pipefail``) in a scratch copy of the repository's folder (``docs/`` copied, and
``.venv`` the virtualenv these tests run in), against a fresh, never-migrated database.
Only the ports change: ``:8000`` and ``--port 8000`` (the API), ``:8025`` and
``--port 8025`` (the simulator) become free ports, in the blocks and in the copied
``docs/examples`` files they read. Nothing else is set for the blocks: an environment
variable a command needs is one the README itself exports.

A block is left out only by a marker on the line before its fence, visible in the README's
source:

- ``<!-- readme-test: skip (why) -->``: never run (``make demo``, a Supabase project);
- ``<!-- readme-test: skip until PATH exists -->``: run once ``PATH`` (relative to the
  repository) exists; until then skipped. Once the file is there the marker is stale
  and the test fails, saying to remove it.

Background jobs (``lqs serve ... &``) are stopped when the session ends. A failure names
the README line of the command that failed (the script keeps the README's line numbers)
and shows the session's output.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import DatabaseFactory, pooler_env
from tests.e2e.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

_FENCE = re.compile(r"^```(\S*)\s*$")
_MARKER = re.compile(r"^<!--\s*readme-test:(.*?)-->\s*$")
_SKIP = re.compile(r"^\s*skip\s+\((?P<why>[^)]+)\)\s*$")
_SKIP_UNTIL = re.compile(r"^\s*skip until (?P<path>\S+) exists\s*$")
_RUNS_IN_SHELL = {"sh", "bash", "shell"}


class ReadmeError(Exception):
    """The README's markers or fences are malformed."""


@dataclass(frozen=True)
class Block:
    first_line: int  # the README line (1-based) of the block's first command line
    lines: list[str]
    skip: str | None  # why the block does not run, None when it runs


def shell_blocks(markdown: str, root: Path = ROOT) -> list[Block]:
    """The ``sh`` blocks of ``markdown`` in order, each with its marker's verdict.

    Raises:
        ReadmeError: a marker that is not on the line before an ``sh`` fence, one this
            test does not know, a stale ``skip until``, or a fence left open.
    """
    blocks: list[Block] = []
    pending: tuple[int, str] | None = None  # a marker waiting for its fence
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        marker = _MARKER.match(line)
        fence = _FENCE.match(line)
        if pending is not None and not (fence and fence.group(1) in _RUNS_IN_SHELL):
            raise ReadmeError(f"README line {pending[0]}: a readme-test marker must be on the "
                              "line just before a ```sh fence")  # fmt: skip
        if marker:
            pending = (i + 1, marker.group(1))
            i += 1
            continue
        if not fence or not fence.group(1):
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
        if end is None:
            raise ReadmeError(f"README line {i + 1}: the fence is never closed")
        if fence.group(1) in _RUNS_IN_SHELL:
            skip = _verdict(pending, root) if pending else None
            blocks.append(Block(i + 2, lines[i + 1 : end], skip))
        pending = None
        i = end + 1
    if pending is not None:
        raise ReadmeError(f"README line {pending[0]}: a marker at the end, before no block")
    return blocks


def _verdict(marker: tuple[int, str], root: Path) -> str | None:
    line, text = marker
    if skip := _SKIP.match(text):
        return skip.group("why")
    if until := _SKIP_UNTIL.match(text):
        path = until.group("path")
        if (root / path).exists():
            raise ReadmeError(f"README line {line}: {path} exists now: remove the marker "
                              "'skip until ... exists' so that the block runs")  # fmt: skip
        return f"until {path} exists"
    raise ReadmeError(f"README line {line}: unknown readme-test marker {text.strip()!r}: "
                      "use 'skip (why)' or 'skip until PATH exists'")  # fmt: skip


def with_ports(text: str, api_port: int, simulator_port: int) -> str:
    """``text`` with the README's ports (8000: the API, 8025: the simulator) replaced; the
    hosts (``localhost``, ``127.0.0.1``) are kept."""
    for readme_port, port in ((8000, api_port), (8025, simulator_port)):
        text = re.sub(rf"(?<=:){readme_port}\b|(?<=--port ){readme_port}\b", str(port), text)
    return text


def session_script(markdown: str, blocks: list[Block]) -> str:
    """One bash script of the blocks that run, each line at its README line number, so
    that ``$LINENO`` is the README's line. Line 1 (the title, never a command) holds the
    preamble: strict mode, a note naming a failing command, background jobs stopped."""
    script = [""] * len(markdown.splitlines())
    for block in blocks:
        if block.skip is None:
            for offset, line in enumerate(block.lines):
                script[block.first_line - 1 + offset] = line
    assert not script[0], "README line 1 is in a block: the preamble needs it"
    script[0] = (
        "set -euo pipefail; "
        """trap 'code=$?; echo "README.md line $LINENO failed (exit $code): $BASH_COMMAND" >&2' ERR; """
        "trap 'kill $(jobs -p) 2>/dev/null || true; wait || true' EXIT"
    )
    return "\n".join(script) + "\n"


def _scratch_repository(
    tmp_path: Path, api_port: int, simulator_port: int
) -> Path:
    """A copy of the repository's folder as the README's commands see it: ``docs/`` (the
    examples with their ports replaced) and ``.venv``, the virtualenv running these tests."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", repo / "docs")
    for path in (repo / "docs" / "examples").rglob("*"):
        if path.is_file() and path.suffix in {".yaml", ".yml", ".json", ".html", ".txt"}:
            path.write_text(with_ports(path.read_text("utf-8"), api_port, simulator_port))
    venv = Path(sys.executable).parent.parent  # not resolved: .venv/bin/python is a link
    if (venv / "bin" / "activate").is_file():
        (repo / ".venv").symlink_to(venv, target_is_directory=True)
    else:  # no virtualenv around this interpreter: an activate that puts it first on PATH
        (repo / ".venv" / "bin").mkdir(parents=True)
        (repo / ".venv" / "bin" / "activate").write_text(
            f'export PATH="{Path(sys.executable).parent}:$PATH"\n'
        )
    return repo


def test_every_shell_block_of_the_readme_runs_as_written(
    make_database: DatabaseFactory, tmp_path: Path
) -> None:
    markdown = README.read_text(encoding="utf-8")
    blocks = shell_blocks(markdown)
    api_port, simulator_port = free_port(), free_port()
    while simulator_port == api_port:
        simulator_port = free_port()
    repo = _scratch_repository(tmp_path, api_port, simulator_port)
    script = repo.parent / "readme.sh"
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
        start_new_session=True,  # its own process group: killed whole below
    )
    try:
        output, _ = process.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"the README's commands did not finish in 180 s; output:\n{output}")
    finally:
        try:  # anything a block left running in the background
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    elapsed = time.monotonic() - started

    assert process.returncode == 0, f"the README's commands failed:\n{output[-20_000:]}"
    print(output)
    skipped = [f"line {b.first_line}: {b.skip}" for b in blocks if b.skip]
    print(f"README: {len(blocks) - len(skipped)} blocks ran in {elapsed:.1f} s; "
          f"skipped: {'; '.join(skipped)}")  # fmt: skip
