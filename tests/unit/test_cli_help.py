"""``--help`` names values, not Python types: ``--client SLUG``, flags bare, no ``<str>``."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
import typer.main
from typer.testing import CliRunner

from lqs.cli import app
from lqs.cli.plain_help import plain_help

TYPE_TAG = re.compile(
    r"<(?:bool|str|int|float|path|uuid|datetime|[a-z]+ range|list\[[^]]*\])>"
    r"|<\w+(?:\|\w+)+>"  # choices in angle brackets: <process|dispatch>
    r"|\b(?:TEXT|INTEGER|FLOAT|BOOLEAN|UUID)\b"
)


def _command_paths(command: object, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, subcommand in sorted(getattr(command, "commands", {}).items()):
        yield from _command_paths(subcommand, (*path, name))


COMMANDS = list(_command_paths(typer.main.get_command(app)))


def test_the_tree_is_walked() -> None:
    assert ("clients", "create") in COMMANDS
    assert ("db", "migrate") in COMMANDS
    assert len(COMMANDS) > 30


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "lqs")
def test_no_help_shows_a_type_tag(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)

    assert result.exit_code == 0, result.output
    assert "--help" in result.output
    assert not TYPE_TAG.findall(result.output), result.output


def test_options_name_their_value_and_flags_show_none() -> None:
    result = CliRunner().invoke(app, ["templates", "put", "--help"], terminal_width=200)
    lines = result.output.splitlines()

    def row(option: str) -> str:
        return next(line for line in lines if f" {option} " in line)

    assert re.search(r"--client +SLUG ", row("--client"))
    assert re.search(r"--body-file +FILE|--body-file +PATH", row("--body-file"))
    assert re.search(r"--channel +email\|sms\|push\|webhook ", row("--channel"))
    assert re.search(r"--help +Show this message", row("--help"))


def _metavars(command: object) -> list[tuple[str | None, str | None, str]]:
    found = [(p.name, p.metavar, type(p).__name__) for p in getattr(command, "params", [])]
    for subcommand in getattr(command, "commands", {}).values():
        found += _metavars(subcommand)
    return found


def test_walking_twice_changes_nothing() -> None:
    command = typer.main.get_command(app)
    plain_help(command)
    once = _metavars(command)
    plain_help(command)

    assert _metavars(command) == once
    assert ("name", "NAME", "_PlainArgument") in once


def test_the_real_entry_point_prints_plain_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lqs", "clients", "create", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "--slug" in result.stdout
    assert "SLUG" in result.stdout
    assert not TYPE_TAG.findall(result.stdout), result.stdout
