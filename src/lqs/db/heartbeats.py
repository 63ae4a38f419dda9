"""Worker heartbeats: each worker process says, every few seconds, that it is alive.

``/readyz`` and operators read ``worker_heartbeats`` to tell a running fleet from one that
stopped or hangs; a row whose ``beat_at`` is old belongs to a worker that died without
saying so (SIGKILL, a lost host).
"""

from __future__ import annotations

from datetime import datetime

from psycopg import AsyncConnection

_BEAT = """
INSERT INTO public.worker_heartbeats AS h (owner, host, pid, started_at, beat_at)
VALUES (%(owner)s, %(host)s, %(pid)s, %(started_at)s, now())
ON CONFLICT (owner) DO UPDATE SET beat_at = now(), stopped_at = NULL
"""


async def record_heartbeat(
    conn: AsyncConnection, *, owner: str, host: str, pid: int, started_at: datetime
) -> None:
    """Say that worker ``owner`` is alive now (creating its row on the first beat)."""
    await conn.execute(_BEAT, {"owner": owner, "host": host, "pid": pid, "started_at": started_at})


async def record_stopped(conn: AsyncConnection, owner: str) -> None:
    """Say that worker ``owner`` stopped on purpose (SIGTERM, ``--once`` finished)."""
    await conn.execute(
        "UPDATE public.worker_heartbeats SET stopped_at = now(), beat_at = now() WHERE owner = %s",
        (owner,),
    )


async def forget_stopped(conn: AsyncConnection, older_than_seconds: float) -> int:
    """Delete the rows of workers that stopped or went silent longer ago than that."""
    cur = await conn.execute(
        "DELETE FROM public.worker_heartbeats WHERE beat_at < now() - make_interval(secs => %s)",
        (older_than_seconds,),
    )
    return cur.rowcount
