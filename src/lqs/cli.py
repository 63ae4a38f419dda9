"""The ``lqs`` command line: wires settings, the database and the commands together."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from lqs.config import Settings, load_settings
from lqs.db.connection import connect
from lqs.db.embedded import start_embedded
from lqs.db.errors import DatabaseError
from lqs.db.migrate import MigrationState, load_migrations, migrate, migration_status, read_applied
from lqs.db.supabase_cli import export_supabase
from lqs.db.verify import VerifyReport, verify

app = typer.Typer(
    name="lqs", help="Lead qualification and outbound communications.", no_args_is_help=True
)
db_app = typer.Typer(help="Migrations and schema checks.", no_args_is_help=True)
app.add_typer(db_app, name="db")

console = Console()


def _fail(message: str) -> NoReturn:
    # typer.echo, not Rich: Rich wraps long lines, and an error is one line.
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=1)


def _settings() -> Settings:
    try:
        return load_settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = "LQS_" + "_".join(str(p) for p in first["loc"]).upper()
        _fail(f"{field}: {first['msg']}")


@contextmanager
def _database_url(settings: Settings) -> Iterator[str]:
    """The configured URL, or the embedded server's (started now, stopped after)."""
    if settings.database_url:
        yield settings.database_url
        return
    server = start_embedded(settings.data_dir)
    try:
        yield server.url
    finally:
        server.stop()


def _print_seed_table(report: VerifyReport) -> None:
    table = Table(title="Seed verification query: public.communications")
    for heading in ("table_name", "column_name", "data_type", "is_nullable"):
        table.add_column(heading)
    for row in report.seed_rows:
        table.add_row(*row)
    table.caption = f"{len(report.seed_rows)} rows"
    console.print(table)


def _report_problems(report: VerifyReport) -> None:
    for problem in report.problems:
        typer.echo(f"drift: {problem}", err=True)


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending migrations, each in its own transaction, under an advisory lock."""
    settings = _settings()
    with (
        _database_url(settings) as url,
        connect(url, connect_timeout=settings.connect_timeout) as conn,
    ):
        applied = migrate(conn)
    if not applied:
        console.print("Database is up to date.")
    for migration in applied:
        console.print(f"applied {migration.filename}")


@db_app.command("status")
def db_status() -> None:
    """List migrations and whether each is applied; exit 1 if any was edited or is missing."""
    settings = _settings()
    with (
        _database_url(settings) as url,
        connect(url, connect_timeout=settings.connect_timeout) as conn,
    ):
        statuses = migration_status(load_migrations(), read_applied(conn))
    table = Table(title="Migrations")
    for heading in ("version", "name", "state", "applied at"):
        table.add_column(heading)
    for s in statuses:
        when = s.applied_at.isoformat(timespec="seconds") if s.applied_at else ""
        table.add_row(f"{s.version:04d}", s.name, s.state.value, when)
    console.print(table)
    if any(s.state in (MigrationState.EDITED, MigrationState.MISSING) for s in statuses):
        _fail("applied migrations differ from the shipped files (see the table)")


@db_app.command("verify")
def db_verify() -> None:
    """Check the live schema against the migrations and run the seed's verification query."""
    settings = _settings()
    with (
        _database_url(settings) as url,
        connect(url, connect_timeout=settings.connect_timeout) as conn,
    ):
        report = verify(conn)
    _print_seed_table(report)
    if not report.ok:
        _report_problems(report)
        _fail(f"schema verification failed: {len(report.problems)} problem(s) listed above")
    console.print(
        "[green]Schema verified:[/green] migrations, seed columns, indexes, RLS, policies."
    )


@db_app.command("export-supabase")
def db_export_supabase(
    directory: Annotated[
        Path, typer.Argument(help="Project folder; files go to supabase/migrations")
    ],
) -> None:
    """Write the migrations as Supabase CLI migrations (supabase/migrations/<ts>_<name>.sql)."""
    for path in export_supabase(directory):
        console.print(f"wrote {path}")


@db_app.command("snapshot", hidden=True)
def db_snapshot() -> None:
    """Print the live schema description (how src/lqs/db/schema.json is made)."""
    from lqs.db.catalog import dump_schema, read_schema

    settings = _settings()
    with (
        _database_url(settings) as url,
        connect(url, connect_timeout=settings.connect_timeout) as conn,
    ):
        sys.stdout.write(dump_schema(read_schema(conn)))


@app.command("demo")
def demo() -> None:
    """Start the database (embedded unless LQS_DATABASE_URL is set), migrate and verify it."""
    settings = _settings()
    with (
        _database_url(settings) as url,
        connect(url, connect_timeout=settings.connect_timeout) as conn,
    ):
        for migration in migrate(conn):
            console.print(f"applied {migration.filename}")
        report = verify(conn)
    _print_seed_table(report)
    if not report.ok:
        _report_problems(report)
        _fail(f"schema verification failed: {len(report.problems)} problem(s) listed above")
    console.print(f"[green]Demo database ready[/green] ({len(report.seed_rows)} columns verified).")


def main() -> None:
    """Entry point: run the app; database problems become one line on stderr and exit 1."""
    try:
        app()
    except DatabaseError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
