"""``lqs db ...``: migrations and schema checks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lqs.cli._common import console, database_url, fail, require_migrated, settings
from lqs.cli.compose import admin_config
from lqs.db.catalog import dump_schema, read_schema
from lqs.db.connection import connect
from lqs.db.embedded import bundled_binary
from lqs.db.migrate import MigrationState, load_migrations, migrate, migration_status, read_history
from lqs.db.supabase_cli import export_supabase, parse_after
from lqs.db.verify import VerifyReport, verify

app = typer.Typer(help="Migrations and schema checks.", no_args_is_help=True)


def print_seed_table(report: VerifyReport) -> None:
    table = Table(title="Seed verification query: public.communications")
    for heading in ("table_name", "column_name", "data_type", "is_nullable"):
        table.add_column(heading)
    for row in report.seed_rows:
        table.add_row(*row)
    table.caption = f"{len(report.seed_rows)} rows"
    console().print(table)


def fail_on_drift(report: VerifyReport) -> None:
    if report.ok:
        return
    for problem in report.problems:
        typer.echo(f"drift: {problem}", err=True)
    fail(f"schema verification failed: {len(report.problems)} problem(s) listed above")


def find_psql(bundled: Path | None = None) -> str:
    """The psql to run: the one shipped with the embedded server (``pgserver``), else the
    one on PATH; exits with one line when there is none."""
    bundled = bundled_binary("psql") if bundled is None else bundled
    if bundled.is_file():
        return str(bundled)
    found = shutil.which("psql")
    if found is None:
        fail(
            "psql was not found (neither with the embedded server nor on PATH): install "
            "PostgreSQL's client (Debian: apt-get install postgresql-client)"
        )
    return found


@app.command("shell")
def db_shell() -> None:
    """Open psql on LQS's database (the embedded one is started first, and stopped after).

    With no terminal, psql reads its commands from standard input (a pipe or a file).
    """
    psql = find_psql()
    with database_url(settings()) as url:
        # Inherits this terminal; psql's own exit code is the command's.
        code = subprocess.run([psql, url], check=False).returncode
    raise typer.Exit(code)


@app.command("migrate")
def db_migrate() -> None:
    """Apply pending migrations, each in its own transaction, under an advisory lock."""
    config = settings()
    with (
        database_url(config, session=True) as url,
        connect(url, connect_timeout=admin_config(config).connect_timeout) as conn,
    ):
        applied = migrate(conn, lock_timeout=admin_config(config).migration_lock_timeout)
    if not applied:
        console().print("Database is up to date.")
    for migration in applied:
        console().print(f"applied {migration.filename}")


@app.command("status")
def db_status() -> None:
    """List migrations and whether each is applied; exit 1 if any was edited or is missing.

    Applied means recorded by `lqs db migrate` or by `supabase db push` of exported files.
    """
    config = settings()
    with (
        database_url(config) as url,
        connect(url, connect_timeout=admin_config(config).connect_timeout) as conn,
    ):
        statuses = migration_status(load_migrations(), read_history(conn))
    table = Table(title="Migrations")
    for heading in ("version", "name", "state", "applied at"):
        table.add_column(heading)
    for s in statuses:
        when = s.applied_at.isoformat(timespec="seconds") if s.applied_at else ""
        table.add_row(f"{s.version:04d}", s.name, s.state.value, when)
    console().print(table)
    if any(s.state in (MigrationState.EDITED, MigrationState.MISSING) for s in statuses):
        fail("applied migrations differ from the shipped files (see the table)")


@app.command("verify")
def db_verify() -> None:
    """Check the live schema against the migrations and run the seed's verification query."""
    config = settings()
    with (
        database_url(config) as url,
        connect(url, connect_timeout=admin_config(config).connect_timeout) as conn,
    ):
        # Never migrated: one line naming `lqs db migrate`, not every object listed missing.
        require_migrated(url, config)
        report = verify(conn)
    print_seed_table(report)
    fail_on_drift(report)
    console().print(
        "[green]Schema verified:[/green] migrations, seed columns, indexes, RLS, policies, "
        "privileges."
    )


@app.command("export-supabase")
def db_export_supabase(
    directory: Annotated[
        Path, typer.Argument(help="Project folder; files go to supabase/migrations")
    ],
    after: Annotated[
        str | None,
        typer.Option(
            "--after",
            metavar="YYYYMMDDHHMMSS",
            help="Version new files after this one too (default: after the folder's newest)",
        ),
    ] = None,
) -> None:
    """Write the migrations as Supabase CLI migrations (<version>_lqs_NNNN_<name>.sql).

    New files are versioned after the newest migration in supabase/migrations, so that
    `supabase db push` applies them in order; files exported before keep their versions.
    """
    try:
        after_time = parse_after(after) if after is not None else None
    except ValueError as exc:
        fail(str(exc))
    for path in export_supabase(directory, load_migrations(), after=after_time):
        console().print(f"wrote {path}")


@app.command("snapshot", hidden=True)
def db_snapshot() -> None:
    """Print the live schema description (how src/lqs/db/schema.json is made)."""
    config = settings()
    with (
        database_url(config) as url,
        connect(url, connect_timeout=admin_config(config).connect_timeout) as conn,
    ):
        sys.stdout.write(dump_schema(read_schema(conn)))
