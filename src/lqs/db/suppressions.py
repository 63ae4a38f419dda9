"""SQL for a client's suppression list: the recipients it must not contact again.

Recipients are stored and compared in the form
:func:`lqs.domain.notifications.normalise_recipient` gives them, through their keyed hash
(``recipient_hash``, ``public.lqs_recipient_hash``: HMAC-SHA256 under the installation's
key, set by a trigger from the address): an erased person's suppression keeps the hash and
loses the address (``recipient`` NULL), and still suppresses them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.rows import args_row

from lqs.domain.notifications import normalise_recipient


async def suppressed_recipients(
    conn: AsyncConnection, candidates: Iterable[tuple[UUID, str, str]]
) -> set[tuple[UUID, str, str]]:
    """Which of the (client, channel, normalised recipient) triples are suppressed."""
    triples = list(set(candidates))
    if not triples:
        return set()
    cur = await conn.execute(
        "SELECT c.client_id, c.channel, c.recipient"
        " FROM unnest(%s::uuid[], %s::text[], %s::text[]) AS c(client_id, channel, recipient)"
        " WHERE EXISTS (SELECT 1 FROM public.suppressions s"
        "  WHERE s.client_id = c.client_id AND s.channel = c.channel"
        "    AND s.recipient_hash = public.lqs_recipient_hash(c.channel, c.recipient))",
        ([t[0] for t in triples], [t[1] for t in triples], [t[2] for t in triples]),
    )
    return {(row[0], row[1], row[2]) for row in await cur.fetchall()}


async def suppress(
    conn: AsyncConnection,
    client_id: UUID,
    channel: str,
    recipient: str,
    reason: str,
    source: str | None,
) -> bool:
    """Add a recipient to the client's suppression list; False if it was there already."""
    cur = await conn.execute(
        "INSERT INTO public.suppressions (client_id, channel, recipient, reason, source)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (client_id, channel, recipient_hash) DO NOTHING",
        (client_id, channel, normalise_recipient(channel, recipient), reason, source),
    )
    return cur.rowcount == 1


async def unsuppress(conn: AsyncConnection, client_id: UUID, channel: str, recipient: str) -> bool:
    """Remove a recipient from the client's suppression list; False if it was not there."""
    cur = await conn.execute(
        "DELETE FROM public.suppressions WHERE client_id = %s AND channel = %s"
        " AND recipient_hash = public.lqs_recipient_hash(%s, %s)",
        (client_id, channel, channel, normalise_recipient(channel, recipient)),
    )
    return cur.rowcount > 0


@dataclass(frozen=True)
class Suppression:
    channel: str
    recipient: str | None
    """None once the person is erased (the hash alone is kept)."""
    reason: str
    source: str | None
    created_at: datetime


async def list_suppressions(
    conn: AsyncConnection, client_id: UUID, *, channel: str | None = None, limit: int = 1000
) -> list[Suppression]:
    cur = await conn.execute(
        "SELECT channel, recipient, reason, source, created_at FROM public.suppressions"
        " WHERE client_id = %(client)s AND (%(channel)s::text IS NULL OR channel = %(channel)s)"
        " ORDER BY created_at DESC, recipient NULLS LAST LIMIT %(limit)s",
        {"client": client_id, "channel": channel, "limit": limit},
    )
    return [Suppression(*row) for row in await cur.fetchall()]


@dataclass(frozen=True)
class StoredSuppression:
    """A suppression with its row's identity, as the tenant API lists and deletes them."""

    id: UUID
    client_id: UUID
    channel: str
    recipient: str | None
    """None once the person is erased (the hash alone is kept)."""
    reason: str
    source: str | None
    created_at: datetime


_PAGE_COLUMNS = (
    "SELECT id, client_id, channel, recipient, reason, source, created_at"
    " FROM public.suppressions WHERE client_id = %(client)s"
)
# Two statements rather than one with "%(at)s IS NULL OR ...": a prepared statement's
# generic plan could not use the row comparison as an index condition.
_FIRST_PAGE = _PAGE_COLUMNS + " ORDER BY created_at DESC, id DESC LIMIT %(limit)s"
_NEXT_PAGE = (
    _PAGE_COLUMNS + " AND (created_at, id) < (%(at)s, %(id)s)"
    " ORDER BY created_at DESC, id DESC LIMIT %(limit)s"
)


async def suppressions_page(
    conn: AsyncConnection,
    client_id: UUID,
    *,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[StoredSuppression]:
    """Up to ``limit`` of the client's suppressions, newest first, after the (created_at,
    id) of the last row of the previous page (keyset pagination on
    ``idx_suppressions_client_created``)."""
    params: dict[str, object] = {"client": client_id, "limit": limit}
    if after is not None:
        params.update(at=after[0], id=after[1])
    async with conn.cursor(row_factory=args_row(StoredSuppression)) as cur:
        await cur.execute(_FIRST_PAGE if after is None else _NEXT_PAGE, params)
        return await cur.fetchall()


async def suppression_by_id(
    conn: AsyncConnection, suppression_id: UUID
) -> StoredSuppression | None:
    """One suppression, or None when it does not exist or the session cannot see it."""
    async with conn.cursor(row_factory=args_row(StoredSuppression)) as cur:
        await cur.execute(
            "SELECT id, client_id, channel, recipient, reason, source, created_at"
            " FROM public.suppressions WHERE id = %s",
            (suppression_id,),
        )
        return await cur.fetchone()


async def delete_suppression(conn: AsyncConnection, suppression_id: UUID) -> bool:
    """Lift one suppression by its id; False if it was not there (or not the session's to
    delete: users read suppressions, only the service role deletes them)."""
    cur = await conn.execute("DELETE FROM public.suppressions WHERE id = %s", (suppression_id,))
    return cur.rowcount > 0
