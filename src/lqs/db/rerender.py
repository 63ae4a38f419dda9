"""SQL for re-rendering failed communications (``lqs comms retry --rerender``).

Every function must run inside the caller's transaction: :func:`lock_failed` locks the
rows the others then update, so a re-render and its re-queueing commit together.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb


@dataclass(frozen=True)
class FailedCommunication:
    """A failed communication, and what re-rendering it needs to know."""

    id: UUID
    client_id: UUID
    lead_id: UUID | None
    template_id: str | None
    """As the processor recorded it: ``name@vN`` or ``name@default`` (None if it did not)."""


@dataclass(frozen=True)
class Rerendered:
    """A communication's new text, from the template version it was rendered with."""

    communication_id: UUID
    subject: str | None
    content: str
    template_id: str
    template_variables: dict[str, Any]


_PICK = """
    FROM public.communications AS c
    JOIN public.clients AS k ON k.id = c.client_id
    WHERE c.status = 'failed'
      AND (%(ids)s::uuid[] IS NULL OR c.id = ANY(%(ids)s::uuid[]))
      AND (%(slug)s::text IS NULL OR k.slug = %(slug)s::text)
"""


async def lock_failed(
    conn: AsyncConnection, ids: Iterable[UUID] | None, client_slug: str | None
) -> list[FailedCommunication]:
    """Lock and return the failed communications among ``ids`` (all if None) of the client
    with ``client_slug`` (any if None), oldest first."""
    cur = await conn.execute(
        "SELECT c.id, c.client_id, c.lead_id, c.template_id"
        + _PICK
        + " ORDER BY c.created_at, c.id FOR UPDATE OF c",
        {"ids": None if ids is None else list(ids), "slug": client_slug},
    )
    return [FailedCommunication(*row) for row in await cur.fetchall()]


async def unrendered_failed(
    conn: AsyncConnection, ids: Iterable[UUID] | None, client_slug: str | None
) -> list[UUID]:
    """The failed communications (chosen as by :func:`lock_failed`) that have no content:
    their template failed, so only a re-render can make them sendable."""
    cur = await conn.execute(
        "SELECT c.id" + _PICK + " AND c.content IS NULL ORDER BY c.created_at, c.id",
        {"ids": None if ids is None else list(ids), "slug": client_slug},
    )
    return [row[0] for row in await cur.fetchall()]


async def leads_by_id(conn: AsyncConnection, ids: Iterable[UUID]) -> dict[UUID, dict[str, Any]]:
    """The leads' current rows (every column, as the processor's claim reads them)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT l.* FROM public.leads AS l WHERE l.id = ANY(%s)", (list(ids),))
        return {row["id"]: row for row in await cur.fetchall()}


async def store_rerendered(conn: AsyncConnection, rendered: Sequence[Rerendered]) -> None:
    """Replace the subject, content, template id and variables of failed communications.

    Rows no longer ``failed`` are left alone. The status is not changed: re-queueing is
    :func:`lqs.db.dispatch.redrive_failed`'s job.
    """
    if not rendered:
        return
    await conn.execute(
        """
        UPDATE public.communications AS c
        SET subject = r.subject, content = r.content, template_id = r.template_id,
            template_variables = r.template_variables
        FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::jsonb[])
             AS r(id, subject, content, template_id, template_variables)
        WHERE c.id = r.id AND c.status = 'failed'
        """,
        (
            [r.communication_id for r in rendered],
            [r.subject for r in rendered],
            [r.content for r in rendered],
            [r.template_id for r in rendered],
            [Jsonb(r.template_variables) for r in rendered],
        ),
    )


async def record_rerender_failures(
    conn: AsyncConnection, failures: Sequence[tuple[UUID, str]]
) -> None:
    """Set the ``error_message`` of failed communications that could not be re-rendered."""
    if not failures:
        return
    await conn.execute(
        """
        UPDATE public.communications AS c SET error_message = f.error
        FROM unnest(%s::uuid[], %s::text[]) AS f(id, error)
        WHERE c.id = f.id AND c.status = 'failed'
        """,
        ([i for i, _ in failures], [e for _, e in failures]),
    )
