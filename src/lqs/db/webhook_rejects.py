"""SQL for refused webhooks: a signed body we answered 400 is kept raw in ``webhook_rejects``.

The body is kept as bytes, exactly as received, because what made it unusable (invalid
UTF-8, NUL, a lone surrogate) is what ``provider_events``' jsonb cannot hold. The reason
and header values are stored as text, escaped where PostgreSQL could not store them.
"""

from __future__ import annotations

from collections.abc import Mapping
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from lqs.domain.leads import escaped

_MAX_REASON = 1000
_MAX_HEADER = 1000

_INSERT = """
INSERT INTO public.webhook_rejects (client_id, provider, reason, headers, body)
VALUES (%(client_id)s, %(provider)s, %(reason)s, %(headers)s, %(body)s)
RETURNING id
"""


async def store_webhook_reject(
    conn: AsyncConnection,
    *,
    client_id: UUID | None,
    provider: str,
    reason: str,
    headers: Mapping[str, str],
    body: bytes,
) -> int:
    """Keep one refused webhook (in the caller's transaction) and return its id.

    ``headers`` must already exclude signatures and credentials: they are stored as given.
    """
    cur = await conn.execute(
        _INSERT,
        {
            "client_id": client_id,
            "provider": provider,
            "reason": escaped(reason, _MAX_REASON),
            "headers": Jsonb(
                {name: escaped(value, _MAX_HEADER) for name, value in headers.items()}
            ),
            "body": body,
        },
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])
