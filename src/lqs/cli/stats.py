"""``lqs stats``: what became of the leads and messages, as tables (``lqs demo`` prints the
same ones when its pipeline has settled) or one JSON object per row."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import typer
from psycopg import AsyncConnection
from rich.table import Table
from rich.text import Text

from lqs.cli._common import SinceOption, console, in_transaction
from lqs.cli._common import since as read_since
from lqs.cli.output import JsonOption, print_json_lines
from lqs.db.clients import get_client
from lqs.db.reports import (
    CommunicationCount,
    ConsentCount,
    EventCount,
    Latency,
    LeadCount,
    SuppressionCount,
    communications_by_status,
    consent_history_by_source,
    delivery_events_by_provider,
    latencies,
    leads_by_status,
    suppressions_by_reason,
)


@dataclass(frozen=True)
class Report:
    """Every count ``lqs stats`` and ``lqs demo`` print, over some clients since a moment."""

    leads: list[LeadCount]
    communications: list[CommunicationCount]
    latency: list[Latency]
    events: list[EventCount]
    suppressions: list[SuppressionCount]
    consent: list[ConsentCount]


async def gather_report(
    conn: AsyncConnection, client_ids: Sequence[UUID] | None, since: datetime | None = None
) -> Report:
    """The counts over the clients (None: every client) since ``since`` (None: ever)."""
    return Report(
        await leads_by_status(conn, client_ids, since),
        await communications_by_status(conn, client_ids, since),
        await latencies(conn, client_ids, since),
        await delivery_events_by_provider(conn, client_ids, since),
        await suppressions_by_reason(conn, client_ids, since),
        await consent_history_by_source(conn, client_ids, since),
    )


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """A Rich table of ``rows`` under ``columns``; None shows as an empty cell, and text
    shows as it is (brackets are not Rich markup)."""
    found = Table(*columns, title=title)
    for row in rows:
        found.add_row(*(Text("" if v is None else str(v)) for v in row))
    return found


def _ms(value: float | None) -> str:
    return f"{value:.0f} ms" if value is not None else "-"


def report_tables(report: Report) -> list[Table]:
    """The report as the tables the terminal shows, in order."""
    return [
        table(
            "Leads by outcome",
            ("client", "status", "leads"),
            [(n.client_slug, n.status, n.leads) for n in report.leads],
        ),
        table(
            "Communications by status and provider",
            ("channel", "provider", "status", "count", "retries"),
            [
                (n.channel, n.provider, n.status, n.communications, n.retries)
                for n in report.communications
            ],
        ),
        table(
            "Latency",
            ("path", "messages", "p50", "p95", "p99"),
            [
                (s.path, s.messages, _ms(s.p50_ms), _ms(s.p95_ms), _ms(s.p99_ms))
                for s in report.latency
            ],
        ),
        table(
            "Delivery events stored (each once; re-deliveries had no effect)",
            ("provider", "events", "unmatched"),
            [(n.provider, n.events, n.unmatched) for n in report.events],
        ),
        table(
            "Suppressions",
            ("reason", "recipients"),
            [(n.reason, n.recipients) for n in report.suppressions],
        ),
        table(
            "Consent history (append-only)",
            ("source", "status", "entries"),
            [(n.source, n.consent_status, n.entries) for n in report.consent],
        ),
    ]


def report_rows(report: Report) -> Iterator[dict[str, Any]]:
    """The report for scripts: each row of each table as one mapping, its table named
    under ``table`` (``leads``, ``communications``, ``latency``, ``events``,
    ``suppressions``, ``consent``)."""
    for name in ("leads", "communications", "latency", "events", "suppressions", "consent"):
        for row in getattr(report, name):
            yield {"table": name, **dataclasses.asdict(row)}


def stats(
    client: Annotated[
        str | None,
        typer.Option("--client", metavar="SLUG", help="Only this client's (default: every one)"),
    ] = None,
    since: SinceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Leads by outcome, communications by status and provider, latency, delivery events,
    suppressions and consent history: the tables ``lqs demo`` prints, for this database."""
    moment = read_since(since)

    async def gather(conn: AsyncConnection) -> Report:
        client_ids = None if client is None else [(await get_client(conn, client)).id]
        return await gather_report(conn, client_ids, moment)

    report = in_transaction(gather)
    if as_json:
        print_json_lines(report_rows(report))
        return
    scope = f"client {client}" if client else "every client"
    when = f" since {moment.isoformat(timespec='seconds')}" if moment else ""
    console().print(f"{scope}{when}")
    for found in report_tables(report):
        console().print(found)
