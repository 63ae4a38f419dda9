"""``lqs retention set|run``: how long a client keeps content, communications and leads, and
applying it now (the worker also does once a day). docs/COMPLIANCE.md."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

import structlog
import typer
from pydantic import ValidationError
from rich.table import Table

from lqs.cli._common import (
    ClientSlugArgument,
    IdleRatioOption,
    console,
    database_url,
    fail,
    for_client,
    settings,
)
from lqs.db.clients import get_client, update_client_settings
from lqs.db.connection import connect_async
from lqs.db.retention import ClientRetention, run_retention
from lqs.domain.retention import IDLE_RATIO, MAX_BATCH, RetentionSettings

app = typer.Typer(help="Set a client's retention and apply retention now.", no_args_is_help=True)
log = structlog.get_logger("lqs.retention")


@app.command("set")
def retention_set(
    slug: ClientSlugArgument,
    content_days: Annotated[
        int | None,
        typer.Option(metavar="DAYS", help="Clear messages' subject, content and payloads after"),
    ] = None,
    rows_days: Annotated[
        int | None,
        typer.Option(metavar="DAYS", help="Delete communications and their events after"),
    ] = None,
    leads_days: Annotated[
        int | None, typer.Option(metavar="DAYS", help="Delete leads (and all they hold) after")
    ] = None,
) -> None:
    """Store a client's retention setting, replacing it (an age left out: kept for ever)."""
    given = {"content_days": content_days, "rows_days": rows_days, "leads_days": leads_days}
    try:
        rules = RetentionSettings.model_validate({k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        name = f"--{where.replace('_', '-')}" if where else "retention"
        fail(f"{name}: {first['msg'].removeprefix('Value error, ')}")
    patch = {"retention": rules.model_dump(exclude_none=True)}
    for_client(slug, lambda conn, found: update_client_settings(conn, found.id, patch))
    kept = [f"{k} {v}" for k, v in rules.model_dump(exclude_none=True).items()]
    console().print(f"stored retention for {slug}: {', '.join(kept) or 'keep everything'}")


_COLUMNS = (
    ("leads deleted", "leads_deleted"),
    ("messages deleted", "communications_deleted"),
    ("attempts deleted", "delivery_attempts_deleted"),
    ("events deleted", "provider_events_deleted"),
    ("content cleared", "communications_content_cleared"),
    ("payloads cleared", "provider_events_payload_cleared"),
    ("attempt texts cleared", "delivery_attempts_text_cleared"),
    ("batch requests deleted", "provider_batches_deleted"),
)


@app.command("run")
def retention_run(
    client: Annotated[
        str | None, typer.Option("--client", metavar="SLUG", help="Only this client")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what is due; change nothing")
    ] = False,
    batch: Annotated[
        int, typer.Option(metavar="ROWS", min=1, max=MAX_BATCH, help="Rows per statement")
    ] = MAX_BATCH,
    idle_ratio: IdleRatioOption = IDLE_RATIO,
) -> None:
    """Apply every client's retention setting now (or one client's), in batches of at most
    ROWS rows, each its own transaction and followed by a pause (--idle-ratio, so that
    processing and sending keep their pace): stopping it loses nothing, and running it
    again continues. --dry-run counts each rule alone (a message may count under two)."""

    async def main(url: str) -> list[ClientRetention]:
        async with await connect_async(url, autocommit=True) as conn:
            if client is not None:
                async with conn.transaction():
                    await get_client(conn, client)  # ClientNotFound: one line
            return await run_retention(
                conn,
                datetime.now(UTC),
                slug=client,
                batch=batch,
                dry_run=dry_run,
                idle_ratio=idle_ratio,
            )

    with database_url(settings()) as url:
        done = asyncio.run(main(url))
    title = "Retention (dry run: nothing changed)" if dry_run else "Retention"
    table = Table("client", *(label for label, _ in _COLUMNS), title=title)
    for part in done:
        if part.counts is None:
            typer.echo(f"error: {part.slug}: {part.problem}; skipped", err=True)
            continue
        counts = part.counts.as_log()
        log.info("retention_applied", client=part.slug, dry_run=dry_run, **counts)
        table.add_row(part.slug, *(str(counts[key]) for _, key in _COLUMNS))
    if not done:
        console().print("no client has a retention setting" + (f" ({client})" if client else ""))
        return
    console().print(table)
    if any(part.counts is None for part in done):
        raise typer.Exit(1)
