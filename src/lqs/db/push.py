"""SQL for push subscriptions: the browsers of a client's staff that push messages go to."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from psycopg import AsyncConnection


@dataclass(frozen=True)
class PushSubscription:
    id: UUID
    client_id: UUID
    endpoint: str
    label: str | None
    created_at: datetime
    gone_at: datetime | None


async def add_push_subscription(
    conn: AsyncConnection,
    client_id: UUID,
    endpoint: str,
    p256dh: str,
    auth: str,
    label: str | None,
) -> PushSubscription:
    """Store a subscription (or revive and re-key the client's one with this endpoint)."""
    cur = await conn.execute(
        "INSERT INTO public.push_subscriptions (client_id, endpoint, p256dh, auth, label)"
        " VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (client_id, endpoint) DO UPDATE SET p256dh = EXCLUDED.p256dh,"
        " auth = EXCLUDED.auth, label = coalesce(EXCLUDED.label, push_subscriptions.label),"
        " gone_at = NULL"
        " RETURNING id, client_id, endpoint, label, created_at, gone_at",
        (client_id, endpoint, p256dh, auth, label),
    )
    row = await cur.fetchone()
    assert row is not None
    return PushSubscription(*row)


async def list_push_subscriptions(conn: AsyncConnection, client_id: UUID) -> list[PushSubscription]:
    """A client's subscriptions, live and gone, newest first."""
    cur = await conn.execute(
        "SELECT id, client_id, endpoint, label, created_at, gone_at"
        " FROM public.push_subscriptions WHERE client_id = %s ORDER BY created_at DESC",
        (client_id,),
    )
    return [PushSubscription(*row) for row in await cur.fetchall()]


async def remove_push_subscription(conn: AsyncConnection, subscription_id: UUID) -> bool:
    """Delete a subscription; False if there was none with this id."""
    cur = await conn.execute(
        "DELETE FROM public.push_subscriptions WHERE id = %s", (subscription_id,)
    )
    return cur.rowcount > 0


async def live_push_subscriptions(
    conn: AsyncConnection, client_ids: Iterable[UUID]
) -> dict[UUID, list[str]]:
    """The ids (as text: a push communication's recipient) of each client's live
    subscriptions."""
    cur = await conn.execute(
        "SELECT client_id, id::text FROM public.push_subscriptions"
        " WHERE client_id = ANY(%s) AND gone_at IS NULL ORDER BY created_at",
        (list(client_ids),),
    )
    found: dict[UUID, list[str]] = {}
    for client_id, subscription_id in await cur.fetchall():
        found.setdefault(client_id, []).append(subscription_id)
    return found
