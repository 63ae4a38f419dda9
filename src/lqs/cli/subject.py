"""``lqs leads export-subject``: everything a client holds on one person, as one JSON
document (GDPR Art. 15; docs/COMPLIANCE.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import psycopg
import typer

from lqs.cli._common import ClientSlugOption, fail, for_client
from lqs.db.clients import Client
from lqs.db.subject_access import subject_bookkeeping
from lqs.db.tenant_reads import subject_records
from lqs.domain.subject_access import SubjectQueryError, subject_document, subject_of


def leads_export_subject(
    client: ClientSlugOption,
    email: Annotated[
        str | None, typer.Option("--email", metavar="EMAIL", help="The person's email address")
    ] = None,
    phone: Annotated[
        str | None,
        typer.Option("--phone", metavar="PHONE", help="The person's phone number (E.164: +...)"),
    ] = None,
) -> None:
    """Print, as one JSON document, every record the client holds on the person with this
    email address and/or phone number: leads, communications with their content,
    delivery attempts, provider events, consent history, suppressions and the rest
    (docs/subject-access.schema.json). Nothing held: the lists are empty."""
    try:
        subject = subject_of(email, phone)
    except SubjectQueryError as exc:
        fail(f"--{exc.error.field} {exc.error.message}")

    async def export(conn: psycopg.AsyncConnection, found: Client) -> dict[str, Any]:
        records = await subject_records(conn, found.id, subject)
        records = await subject_bookkeeping(conn, found.id, subject, records)
        about = {"id": found.id, "slug": found.slug, "name": found.name}
        return subject_document(about, subject, datetime.now(UTC), records)

    document = for_client(client, export)
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False))
