"""``--help`` names values, not Python types: ``--client SLUG``, flags bare, no ``<str>``."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
import typer.main
from typer.models import Context
from typer.testing import CliRunner

import lqs.cli
from lqs.cli import app
from lqs.cli.plain_help import plain_help

TYPE_TAG = re.compile(
    r"<(?:bool|str|int|float|path|uuid|datetime|[a-z]+ range|list\[[^]]*\])>"
    r"|<\w+(?:\|\w+)+>"  # choices in angle brackets: <process|dispatch>
    r"|\b(?:TEXT|INTEGER|FLOAT|BOOLEAN|UUID)\b"
)


def _command_paths(command: object, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    if hasattr(command, "list_commands"):  # the root loads its subcommands when asked for
        context = Context(command)
        for name in sorted(command.list_commands(context)):
            yield from _command_paths(command.get_command(context, name), (*path, name))


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
    command = lqs.cli.load_command("clients")
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


@pytest.mark.parametrize("name", list(lqs.cli._COMMANDS))
def test_the_root_help_line_of_each_command_is_its_own_help(name: str) -> None:
    """``lqs --help`` shows a line kept beside the lazy table; it must say what the
    command's own help says (its first paragraph, as one line)."""
    command = lqs.cli.load_command(name)
    first_paragraph = " ".join((command.help or "").split("\n\n")[0].split())
    assert lqs.cli._COMMANDS[name][2] == first_paragraph.replace("``", "")


def test_lqs_help_imports_no_command_module() -> None:
    """``lqs --help`` lists every command without importing any of them (nor the database
    driver): what keeps it fast. A command's own help loads only that command."""
    probe = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from lqs.cli import app\n"
        'for args in (["--help"], ["db", "--help"]):\n'
        "    assert CliRunner().invoke(app, args).exit_code == 0\n"
        "    print(sorted(m for m in sys.modules\n"
        '                 if m.startswith(("lqs.cli.", "psycopg", "pydantic"))))\n'
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    root, db = done.stdout.splitlines()
    assert root == "['lqs.cli.plain_help']"
    assert "'lqs.cli.db'" in db
    assert "'lqs.cli.clients'" not in db
