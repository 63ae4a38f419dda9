"""SQL for a client's versioned message templates (``public.templates``).

A template is known by its **name** (``lead_qualified``) and a version; the highest version
of a name is the one in use. ``communications.template_id`` (the seed's column) records
the exact template a message used as ``name@vN``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from psycopg import AsyncConnection


@dataclass(frozen=True)
class StoredTemplate:
    client_id: UUID
    name: str
    version: int
    channel: str
    subject: str | None
    body: str
    body_format: str


async def latest_templates(
    conn: AsyncConnection, client_ids: Iterable[UUID]
) -> dict[tuple[UUID, str], StoredTemplate]:
    """Each client's highest version of every template it has stored, by (client, name)."""
    cur = await conn.execute(
        "SELECT DISTINCT ON (client_id, name)"
        " client_id, name, version, channel, subject, body, body_format"
        " FROM public.templates WHERE client_id = ANY(%s)"
        " ORDER BY client_id, name, version DESC",
        (list(client_ids),),
    )
    return {(row[0], row[1]): StoredTemplate(*row) for row in await cur.fetchall()}


async def store_template(
    conn: AsyncConnection,
    client_id: UUID,
    name: str,
    channel: str,
    subject: str | None,
    body: str,
    body_format: str,
) -> int:
    """Store a new version of a client's template; return its version number."""
    cur = await conn.execute(
        "INSERT INTO public.templates"
        " (client_id, name, version, channel, subject, body, body_format)"
        " SELECT %(client)s::uuid, %(name)s::text, coalesce(max(version), 0) + 1,"
        " %(channel)s, %(subject)s, %(body)s, %(format)s FROM public.templates"
        " WHERE client_id = %(client)s::uuid AND name = %(name)s::text"
        " RETURNING version",
        {
            "client": client_id,
            "name": name,
            "channel": channel,
            "subject": subject,
            "body": body,
            "format": body_format,
        },
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


@dataclass(frozen=True)
class TemplateVersion:
    """One stored version of a client's template, with when it was stored and how many
    versions of its name there are."""

    name: str
    version: int
    channel: str
    subject: str | None
    body: str
    body_format: str
    created_at: datetime
    versions: int


async def client_templates(conn: AsyncConnection, client_id: UUID) -> list[TemplateVersion]:
    """The highest version of each template the client stored, by name."""
    cur = await conn.execute(
        "SELECT DISTINCT ON (name) name, version, channel, subject, body, body_format,"
        " created_at, count(*) OVER (PARTITION BY name)"
        " FROM public.templates WHERE client_id = %s ORDER BY name, version DESC",
        (client_id,),
    )
    return [TemplateVersion(*row) for row in await cur.fetchall()]


async def client_template(
    conn: AsyncConnection, client_id: UUID, name: str, version: int | None = None
) -> TemplateVersion | None:
    """Version ``version`` of the client's template ``name`` (None: the highest), or None
    when the client stored no such version."""
    cur = await conn.execute(
        "SELECT name, version, channel, subject, body, body_format, created_at,"
        " count(*) OVER ()"
        " FROM public.templates WHERE client_id = %(client)s AND name = %(name)s"
        " ORDER BY version = %(version)s DESC NULLS LAST, version DESC LIMIT 1",
        {"client": client_id, "name": name, "version": version},
    )
    row = await cur.fetchone()
    if row is None:
        return None
    found = TemplateVersion(*row)
    return found if version is None or found.version == version else None
