"""The statistics rollup's refresh (migration 0018), run by the worker as the database
owner: not a tenant's read, so it lives apart from :mod:`lqs.db.tenant_stats`, whose
functions run as the user.

``public.lqs_stats_refresh`` does the work in the database: one refresh at a time (a
transaction-scoped advisory lock), up to a batch of the (client, hour) pairs that writers'
triggers logged as changed, each recounted from the rows.
"""

from __future__ import annotations

from psycopg import AsyncConnection

REFRESH_BATCH = 500
"""How many logged (client, hour) pairs one refresh recounts at most."""


async def refresh_rollup(conn: AsyncConnection, max_hours: int = REFRESH_BATCH) -> int:
    """Recount up to ``max_hours`` of the (client, hour) pairs logged as changed, in one
    transaction (``lqs_stats_refresh``, migration 0018); how many were recounted (0: none
    were logged, or another refresh is running). Run as the database owner."""
    async with conn.transaction():
        await conn.execute("SELECT set_config('jit', 'off', true)")
        cur = await conn.execute("SELECT public.lqs_stats_refresh(%s)", (max_hours,))
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])
