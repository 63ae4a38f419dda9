"""``lqs comms ...``: look at communications and re-drive the failed ones."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import psycopg
import typer
from rich.table import Table

from lqs.cli._common import (
    ID_PREFIX_MATCHES,
    console,
    fail,
    id_or_prefix,
    in_transaction,
    one_of,
    one_with_prefix,
    storable_option,
)
from lqs.cli.lead_views import find_lead
from lqs.cli.output import JsonOption, QuietOption, print_json_lines
from lqs.db.clients import get_client
from lqs.db.communications import (
    CommunicationSummary,
    communication_timeline,
    communications_with_ids_between,
    list_communications,
    redrive_failed,
    unknown_communications,
)
from lqs.domain.vocabulary import CommunicationStatus

app = typer.Typer(help="List communications and re-drive failed ones.", no_args_is_help=True)


@app.command("list")
def comms_list(
    status: Annotated[str | None, typer.Option(help="Only this status, e.g. failed")] = None,
    client: Annotated[str | None, typer.Option("--client", help="Only this client's")] = None,
    lead: Annotated[
        str | None,
        typer.Option(help="Only this lead's: its id, id prefix or email (with --client)"),
    ] = None,
    template: Annotated[
        str | None,
        typer.Option(help="Only this template's: its name (any version) or name@v3"),
    ] = None,
    campaign: Annotated[str | None, typer.Option(help="Only this campaign's")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """The newest communications; ``--status failed`` is the dead-letter view."""
    wanted = one_of(status, CommunicationStatus)
    for value, option in ((template, "--template"), (campaign, "--campaign")):
        if value is not None:
            storable_option(value, option)

    async def listed(conn: psycopg.AsyncConnection) -> list[CommunicationSummary]:
        await _known(conn, None, client)  # an unknown slug is an error, not an empty list
        lead_id = None if lead is None else await find_lead(conn, lead, client)
        return await list_communications(
            conn, status=wanted, client_slug=client, limit=limit, lead_id=lead_id,
            template=template, campaign_id=campaign,
        )  # fmt: skip

    rows = in_transaction(listed)
    if quiet:
        for row in rows:
            typer.echo(str(row.id))
        return
    if as_json:
        print_json_lines(rows)
        return
    table = Table("id", "client", "channel", "recipient", "status", "provider", "retries", "reason")
    for row in rows:
        table.add_row(
            str(row.id), row.client_slug, row.channel, row.recipient, row.status,
            row.provider or "", str(row.retry_count), (row.reason or "")[:80],
        )  # fmt: skip
    console().print(table)
    console().print(f"{len(rows)} communication(s)")


@app.command("show")
def comms_show(
    communication_id: Annotated[str, typer.Argument(help="The communication's id")],
) -> None:
    """One communication: its fields, then its timeline (attempts and provider events).

    The id may be shortened to any unique prefix (at least 4 characters), as `lqs comms
    list` shows it.
    """
    wanted = _communication_id(communication_id)
    found = in_transaction(lambda conn: communication_timeline(conn, wanted))
    if found is None:
        fail(f"no communication {wanted}")
    row, entries = found
    fields = Table("field", "value", show_header=False)
    for label, name in (
        ("id", "id"), ("client", "client_slug"), ("lead", "lead_id"), ("channel", "type"),
        ("recipient", "recipient"), ("status", "status"), ("provider", "provider"),
        ("external_id", "external_id"), ("template", "template_id"), ("subject", "subject"),
        ("retry_count", "retry_count"), ("max_retries", "max_retries"),
        ("error_message", "error_message"), ("compliance_notes", "compliance_notes"),
        ("created_at", "created_at"), ("sent_at", "sent_at"), ("delivered_at", "delivered_at"),
        ("content", "content"),
    ):  # fmt: skip
        value = row.get(name)
        fields.add_row(label, "" if value is None else str(value))
    console().print(fields)
    timeline = Table("time", "what", "detail", title="timeline")
    for entry in entries:
        timeline.add_row(f"{entry.at:%Y-%m-%d %H:%M:%S.%f}"[:-3], entry.kind, entry.summary)
    console().print(timeline)


def _communication_id(value: str) -> UUID:
    """A full id, or the one communication whose id starts with ``value``."""
    parsed = id_or_prefix(value, "communication")
    if isinstance(parsed, UUID):
        return parsed
    found = in_transaction(
        lambda conn: communications_with_ids_between(
            conn, parsed.low, parsed.high, limit=ID_PREFIX_MATCHES
        )
    )
    one = one_with_prefix(parsed, found, "communication")
    if isinstance(one, str):
        fail(one)
    return one


@app.command("retry")
def comms_retry(
    ids: Annotated[
        list[str] | None, typer.Argument(help="Failed communications to re-drive (ids)")
    ] = None,
    client: Annotated[
        str | None, typer.Option("--client", help="Re-drive this client's failed ones")
    ] = None,
    all_failed: Annotated[
        bool, typer.Option("--all-failed", help="Re-drive every failed communication")
    ] = False,
    rerender: Annotated[
        bool,
        typer.Option(
            "--rerender",
            help="First render each again from the client's current template and the"
            " lead's current data (after fixing a template)",
        ),
    ] = False,
) -> None:
    """Queue failed communications again (status pending, retry count 0).

    Without --rerender, a communication whose template failed (it has no content) is left
    alone: only a re-render can make it sendable. With --rerender, one that still cannot
    be rendered stays failed with the new reason, is listed, and the command exits 1.
    """
    if not ids and client is None and not all_failed:
        fail("name communication ids, or --client SLUG, or --all-failed")
    parsed: list[UUID] | None = None
    if ids:
        try:
            parsed = [UUID(value) for value in ids]
        except ValueError:
            fail("communication ids must be UUIDs")
    in_transaction(lambda conn: _known(conn, parsed, client))
    if rerender:
        _retry_rerendered(parsed, client)
        return

    async def redrive(conn: psycopg.AsyncConnection) -> tuple[list[UUID], list[UUID]]:
        from lqs.db.rerender import unrendered_failed

        unrendered = await unrendered_failed(conn, parsed, client)
        return await redrive_failed(conn, parsed, client), unrendered

    redriven, unrendered = in_transaction(redrive)
    if unrendered:
        typer.echo(
            f"left alone {len(unrendered)} failed communication(s) that were never rendered"
            " (their template failed): fix the template, then retry them with --rerender:"
            f" {_ids(unrendered)}",
            err=True,
        )
    if parsed is not None and len(redriven) + len(unrendered) < len(parsed):
        missing = sorted(str(i) for i in set(parsed) - set(redriven) - set(unrendered))
        typer.echo(f"not failed, left alone: {', '.join(missing)}", err=True)
    console().print(f"queued {len(redriven)} communication(s) again")


async def _known(conn: psycopg.AsyncConnection, ids: list[UUID] | None, slug: str | None) -> None:
    """Refuse, before anything is queued, a client slug or an id that names nothing.

    Raises:
        ClientNotFound: no client has the slug (printed as one line, exit 1).
    """
    if slug is not None:
        await get_client(conn, slug)
    unknown = await unknown_communications(conn, ids or [])
    if unknown:
        fail(f"no communication with id {_ids(unknown)}; nothing was queued")


def _retry_rerendered(parsed: list[UUID] | None, client: str | None) -> None:
    # Jinja2, the sandbox and the processor: only this option needs them.
    from lqs.worker.rerender import rerender_failed

    report = in_transaction(lambda conn: rerender_failed(conn, parsed, client))
    done = {*report.requeued, *(i for i, _ in report.still_failed)}
    if parsed is not None and len(done) < len(parsed):
        missing = sorted(str(i) for i in set(parsed) - done)
        typer.echo(f"not failed, left alone: {', '.join(missing)}", err=True)
    for communication_id, reason in report.still_failed[:_SHOWN]:
        typer.echo(f"still failed: {communication_id}: {reason}", err=True)
    if len(report.still_failed) > _SHOWN:
        typer.echo(
            f"... and {len(report.still_failed) - _SHOWN} more (lqs comms list --status failed)",
            err=True,
        )
    console().print(f"re-rendered and queued {len(report.requeued)} communication(s) again")
    if report.still_failed:
        fail(f"{len(report.still_failed)} communication(s) could not be re-rendered: still failed")


_SHOWN = 20
"""How many ids or reasons a command lists before it counts the rest."""


def _ids(ids: list[UUID]) -> str:
    shown = ", ".join(str(i) for i in ids[:_SHOWN])
    return shown if len(ids) <= _SHOWN else f"{shown} and {len(ids) - _SHOWN} more"
