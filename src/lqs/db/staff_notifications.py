"""What clients' staff were told: the messages to a client's own recipients (its
notification email and phone, its webhook URL, its browsers' push subscriptions), the
ones ``lqs clients notify`` configures, counted per channel and recipient."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from psycopg import AsyncConnection


@dataclass(frozen=True)
class StaffNotificationCount:
    client_slug: str
    channel: str
    recipient: str
    """The address, number or URL; a push subscription's id for push."""
    messages: int
    delivered: int
    """Confirmed: a delivery event (email, SMS), or the receiver's 2xx (webhook)."""
    sent: int
    """Accepted by the provider, no delivery confirmed (push services never confirm)."""
    not_sent: int
    """Failed, bounced or rejected."""


_COUNTS = """
SELECT k.slug, c.type, c.recipient, count(*),
       count(*) FILTER (WHERE c.status = 'delivered'),
       count(*) FILTER (WHERE c.status = 'sent'),
       count(*) FILTER (WHERE c.status IN ('failed', 'bounced', 'rejected'))
FROM public.communications AS c
JOIN public.clients AS k ON k.id = c.client_id
WHERE c.client_id = ANY(%s)
  AND CASE c.type
        WHEN 'email' THEN c.recipient = k.settings->>'notification_email'
        WHEN 'sms' THEN c.recipient = k.settings->>'notification_phone'
        WHEN 'webhook' THEN c.recipient = k.settings #>> '{delivery,webhook,url}'
        -- A push communication's recipient is its subscription's id (leads have none).
        ELSE EXISTS (SELECT 1 FROM public.push_subscriptions AS p
                     WHERE p.client_id = c.client_id AND p.id::text = c.recipient)
      END
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3
"""


async def staff_notification_counts(
    conn: AsyncConnection, client_ids: Sequence[UUID]
) -> list[StaffNotificationCount]:
    """Messages to each client's staff, per client slug, channel and recipient, by status.

    A recipient is the staff's when it is the client's current notification address,
    webhook URL or one of its push subscriptions; a lead who shares the client's own
    address is counted with the staff.
    """
    cur = await conn.execute(_COUNTS, (list(client_ids),))
    return [StaffNotificationCount(*row) for row in await cur.fetchall()]
