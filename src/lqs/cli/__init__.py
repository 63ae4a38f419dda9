"""The ``lqs`` command line: wires settings, the database and the commands together."""

from __future__ import annotations

import importlib
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from lqs.cli.plain_help import PlainHelpGroup, plain_help
from lqs.errors import LqsError

_COMMANDS: dict[str, tuple[str, str, str]] = {
    "serve": (
        "lqs.cli.run",
        "serve",
        "Serve the HTTP API (lead intake) with uvicorn until interrupted.",
    ),
    "worker": (
        "lqs.cli.run",
        "worker",
        "Process queued leads and send pending communications: as a daemon (wakes on"
        " NOTIFY), or once with --once.",
    ),
    "demo": (
        "lqs.cli.demo",
        "demo",
        "Run the whole flow on the local database and simulator, then print what happened.",
    ),
    "simulate": (
        "lqs.cli.simulate",
        "simulate",
        "Serve the provider simulator until interrupted; point provider base URLs at it.",
    ),
    "stats": (
        "lqs.cli.stats",
        "stats",
        "Leads by outcome, communications by status and provider, latency, delivery events,"
        " suppressions and consent history: the tables lqs demo prints, for this database.",
    ),
    "db": ("lqs.cli.db", "app", "Migrations and schema checks."),
    "clients": ("lqs.cli.clients", "clients_app", "Create and configure clients (tenants)."),
    "keys": ("lqs.cli.clients", "keys_app", "Create, list and revoke a client's API keys."),
    "templates": (
        "lqs.cli.templates",
        "templates_app",
        "Store, list, show and preview a client's message templates.",
    ),
    "leads": ("lqs.cli.leads", "app", "Work with leads."),
    "comms": ("lqs.cli.comms", "app", "List communications and re-drive failed ones."),
    "push": ("lqs.cli.push", "app", "Manage a client's browser push subscriptions."),
    "suppressions": ("lqs.cli.suppressions", "app", "List, add and remove suppressed recipients."),
    "retention": (
        "lqs.cli.retention",
        "app",
        "Set a client's retention and apply retention now.",
    ),
    "users": (
        "lqs.cli.users",
        "app",
        "Add, list, disable and enable the users who sign in to LQS, and reset their passwords.",
    ),
}
"""Each subcommand of ``lqs``: the module and attribute that define it (a typer app, or a
function for a single command), and the one line ``lqs --help`` shows for it. A module is
imported only when its command runs (or its own ``--help`` is asked for), so ``lqs
--help`` loads none of them; ``tests/unit/test_cli_help.py`` checks each line against the
command's own help."""


def load_command(name: str) -> Any:
    """The click command ``lqs NAME`` runs, importing the module that defines it."""
    module, attribute, _ = _COMMANDS[name]
    defined: Any = getattr(importlib.import_module(module), attribute)
    if isinstance(defined, typer.Typer):
        command = typer.main.get_command(defined)
    else:
        single = typer.Typer()
        single.command(name)(defined)
        command = typer.main.get_command(single)
    command.name = name
    plain_help(command)
    return command


class LazyGroup(PlainHelpGroup):
    """The root command: its subcommands are loaded one at a time, when asked for."""

    listing = False
    """True while the root's own help is drawn: then unloaded commands are their line."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*_COMMANDS, *(name for name in self.commands if name not in _COMMANDS)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in _COMMANDS:
            line = _COMMANDS[cmd_name][2]
            if self.listing:
                return TyperCommand(cmd_name, help=line, short_help=line)
            self.commands[cmd_name] = load_command(cmd_name)
        return self.commands.get(cmd_name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self.listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self.listing = False


app = typer.Typer(
    name="lqs",
    help="Lead qualification and outbound communications.",
    no_args_is_help=True,
    cls=LazyGroup,
)


@app.callback()
def _global_options(
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Say which database a command uses (on stderr, once)"),
    ] = False,
) -> None:
    from lqs.cli._common import set_verbose

    _configure_logging()
    set_verbose(verbose)


def _configure_logging() -> None:
    # Plain tracebacks: structlog's default renders them with Rich, which takes about a
    # second per exception; a tenant whose message makes an adapter raise would stall the
    # worker's event loop for that long each time.
    import structlog

    # Colours only on a terminal: a log file or a pipe gets plain key=value lines.
    processors = list(structlog.get_config()["processors"])
    processors[-1] = structlog.dev.ConsoleRenderer(
        colors=sys.stdout.isatty(), exception_formatter=structlog.dev.plain_traceback
    )
    structlog.configure(processors=processors)


def main() -> None:
    """Entry point: run the app. Any LQS error (:class:`lqs.errors.LqsError`) becomes one
    line on stderr, ``error: <message>; <action>``, and exit 1, as does the database
    going away mid-command; anything else is a bug and keeps its traceback."""
    try:
        app()
    except LqsError as exc:
        typer.echo(f"error: {exc.one_line()}", err=True)
        sys.exit(1)
    except Exception as exc:
        from lqs.db.errors import is_transient

        if not is_transient(exc):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        typer.echo(
            f"error: the database became unavailable ({first}); what was committed is"
            " kept: run the command again",
            err=True,
        )
        sys.exit(1)
