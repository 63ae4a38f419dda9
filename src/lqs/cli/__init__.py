"""The ``lqs`` command line: wires settings, the database and the commands together."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from lqs.cli import (
    clients,
    comms,
    db,
    demo,
    lead_views,
    leads,
    push,
    run,
    simulate,
    stats,
    suppressions,
    templates,
)
from lqs.cli._common import set_verbose
from lqs.cli.plain_help import PlainHelpGroup
from lqs.db.errors import is_transient
from lqs.errors import LqsError

app = typer.Typer(
    name="lqs",
    help="Lead qualification and outbound communications.",
    no_args_is_help=True,
    cls=PlainHelpGroup,
)


@app.callback()
def _global_options(
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Say which database a command uses (on stderr, once)"),
    ] = False,
) -> None:
    set_verbose(verbose)


app.add_typer(db.app, name="db")
app.add_typer(clients.clients_app, name="clients")
app.add_typer(clients.keys_app, name="keys")
app.add_typer(templates.templates_app, name="templates")
app.add_typer(leads.app, name="leads")
leads.app.command("list")(lead_views.leads_list)
leads.app.command("show")(lead_views.leads_show)
leads.app.command("reprocess")(lead_views.leads_reprocess)
app.add_typer(comms.app, name="comms")
app.add_typer(push.app, name="push")
app.add_typer(suppressions.app, name="suppressions")
app.command("serve")(run.serve)
app.command("worker")(run.worker)
app.command("demo")(demo.demo)
app.command("simulate")(simulate.simulate)
app.command("stats")(stats.stats)


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
    _configure_logging()
    try:
        app()
    except LqsError as exc:
        typer.echo(f"error: {exc.one_line()}", err=True)
        sys.exit(1)
    except Exception as exc:
        if not is_transient(exc):
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        typer.echo(
            f"error: the database became unavailable ({first}); what was committed is"
            " kept: run the command again",
            err=True,
        )
        sys.exit(1)
