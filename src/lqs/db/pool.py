"""The service's one async connection pool, and sessions that run as a tenant's user."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Literal
from uuid import UUID

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from lqs.db.connection import check_async_connect

DatabaseRole = Literal["anon", "authenticated", "service_role"]


async def _configure_worker_connection(conn: AsyncConnection) -> None:
    # A generic plan cached for the claim query after an idle stretch ignores the
    # partial index once the queue fills: measured as a 1,000-row claim taking 36 s.
    await conn.execute("SET plan_cache_mode = force_custom_plan")
    await conn.commit()


async def open_pool(
    url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    worker: bool = False,
    connect_timeout: int = 10,
) -> AsyncConnectionPool:
    """Open the pool after one probing connection, so a bad URL fails with a clear message.

    ``worker=True`` configures each connection with ``plan_cache_mode = force_custom_plan``.

    Raises:
        DatabaseUnavailable, UnsupportedServer: from the probing connection.
    """
    await check_async_connect(url, connect_timeout=connect_timeout)
    pool = AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        kwargs={"connect_timeout": connect_timeout},
        configure=_configure_worker_connection if worker else None,
        open=False,
    )
    await pool.open(wait=True, timeout=float(connect_timeout))
    return pool


def jwt_claims(
    user_id: UUID | None, role: DatabaseRole, extra: Mapping[str, object] | None = None
) -> dict[str, object]:
    """The claims PostgREST would set for a Supabase JWT with this subject and role.

    ``extra`` adds claims but can never change ``role`` or ``sub``: the claimed role must be
    the database role the session runs as, or a policy that trusts ``auth.role()`` would
    grant an ``authenticated`` session the service role's rows.

    Raises:
        ValueError: ``extra`` tries to set ``role`` or ``sub``.
    """
    if extra and {"role", "sub"} & set(extra):
        raise ValueError("extra claims may not set 'role' or 'sub'")
    claims: dict[str, object] = dict(extra or {})
    claims["role"] = role
    if user_id is not None:
        claims["sub"] = str(user_id)
    return claims


@asynccontextmanager
async def tenant_session(
    pool: AsyncConnectionPool,
    user_id: UUID | None,
    *,
    role: DatabaseRole = "authenticated",
    extra_claims: Mapping[str, object] | None = None,
) -> AsyncIterator[AsyncConnection]:
    """A transaction that runs as ``role`` with the user's JWT claims, as PostgREST does.

    Both settings are transaction-local, so nothing leaks to the next user of the
    connection; row-level security, not application code, decides what is visible.
    The transaction commits when the block ends normally and rolls back on an exception.
    """
    claims = json.dumps(jwt_claims(user_id, role, extra_claims))
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            "SELECT set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
            (role, claims),
        )
        yield conn
