"""The README's shell blocks as one bash session (run by tests/e2e/test_readme.py).

Every fenced ``sh`` block (also ``bash``, ``shell``) runs, in order, in one bash session.
A block is left out only by a marker on the line just before its fence, visible in the
README's source:

- ``<!-- readme-test: skip (why) -->``: never run (``make demo`` itself, a Supabase
  project);
- ``<!-- readme-test: skip until PATH exists -->``: skipped while ``PATH`` (relative to
  the repository) is missing. Once it exists the marker is stale: an error, saying to
  remove it, so a block can never stay skipped by oversight.

Any other marker, or a marker not followed by a shell fence, is an error. Only the ports
change when the session runs (:func:`with_ports`): the README's hosts and everything else
stay as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_FENCE = re.compile(r"^```(\S*)\s*$")
_MARKER = re.compile(r"^<!--\s*readme-test:(.*?)-->\s*$")
_SKIP = re.compile(r"^\s*skip\s+\((?P<why>[^)]+)\)\s*$")
_SKIP_UNTIL = re.compile(r"^\s*skip until (?P<path>\S+) exists\s*$")
SHELL_LANGUAGES = frozenset({"sh", "bash", "shell"})

API_PORT = 8000
SIMULATOR_PORT = 8025


class ReadmeError(Exception):
    """The README's markers or fences are malformed."""


@dataclass(frozen=True)
class Block:
    first_line: int
    """The README line (1-based) of the block's first line, just after its fence."""
    lines: list[str]
    skip: str | None
    """Why the block does not run; None when it runs."""


def shell_blocks(markdown: str, root: Path) -> list[Block]:
    """The shell blocks of ``markdown`` in order, each with its marker's verdict (``root``:
    the repository, where ``skip until PATH exists`` looks).

    Raises:
        ReadmeError: a marker not on the line just before a shell fence, a marker this
            module does not know, a stale ``skip until``, or a fence never closed.
    """
    blocks: list[Block] = []
    pending: tuple[int, str] | None = None  # a marker waiting for its fence: (line, text)
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        marker = _MARKER.match(lines[i])
        fence = _FENCE.match(lines[i])
        if pending is not None and not (fence and fence.group(1) in SHELL_LANGUAGES):
            raise ReadmeError(
                f"README line {pending[0]}: a readme-test marker must be on the line just "
                "before a ```sh fence"
            )
        if marker:
            pending = (i + 1, marker.group(1))
            i += 1
            continue
        if not fence or not fence.group(1):  # text, or a stray closing fence
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
        if end is None:
            raise ReadmeError(f"README line {i + 1}: the ``` fence is never closed")
        if fence.group(1) in SHELL_LANGUAGES:
            skip = _verdict(pending, root) if pending else None
            blocks.append(Block(i + 2, lines[i + 1 : end], skip))
        pending = None
        i = end + 1
    if pending is not None:
        raise ReadmeError(
            f"README line {pending[0]}: a readme-test marker must be on the line just "
            "before a ```sh fence"
        )
    return blocks


def _verdict(marker: tuple[int, str], root: Path) -> str | None:
    line, text = marker
    if skip := _SKIP.match(text):
        return skip.group("why")
    if until := _SKIP_UNTIL.match(text):
        path = until.group("path")
        if (root / path).exists():
            raise ReadmeError(
                f"README line {line}: {path} exists now: remove the marker "
                f"'skip until {path} exists' so that the block runs"
            )
        return f"until {path} exists"
    raise ReadmeError(
        f"README line {line}: unknown readme-test marker {text.strip()!r}: use "
        "'skip (why)' or 'skip until PATH exists'"
    )


def with_ports(text: str, api_port: int, simulator_port: int) -> str:
    """``text`` with the README's ports replaced where they are ports (``:8000``,
    ``--port 8000``; 8025 likewise for the simulator); hosts stay as they are."""
    for readme_port, port in ((API_PORT, api_port), (SIMULATOR_PORT, simulator_port)):
        text = re.sub(rf"(?<=:){readme_port}\b|(?<=--port ){readme_port}\b", str(port), text)
    return text


PREAMBLE = (
    "set -euo pipefail; "
    "trap 'code=$?; echo \"README.md line $LINENO failed (exit $code): $BASH_COMMAND\" >&2' ERR; "
    "trap 'kill $(jobs -p) 2>/dev/null || true; wait || true' EXIT"
)
"""Strict mode; a failing command named by its README line; background jobs stopped."""


def session_script(markdown: str, blocks: list[Block]) -> str:
    """One bash script of the blocks that run, each line at its README line number (so
    ``$LINENO`` is the README's line), the preamble on line 1 (never a command: a block's
    lines come after its fence)."""
    script = [""] * len(markdown.splitlines())
    for block in blocks:
        if block.skip is None:
            script[block.first_line - 1 : block.first_line - 1 + len(block.lines)] = block.lines
    script[0] = PREAMBLE
    return "\n".join(script) + "\n"
