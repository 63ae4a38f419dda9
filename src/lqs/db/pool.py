"""The service's async connection pools, transactions retried once after a lost
connection, and sessions that run as a tenant's user.

A managed PostgreSQL drops connections (failovers, restarts, idle reapers,
``pg_terminate_backend``). Every pool therefore checks a connection before handing it
out, throws away its dead siblings when one is found dead, and keeps reconnecting on
its own after the server comes back; :func:`run_transaction` repeats a transaction once
when its connection died under it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal, TypeVar
from uuid import UUID

import psycopg
import structlog
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout, TooManyRequests

from lqs.db.connection import check_async_connect, prepare_options, transaction_pooled
from lqs.db.errors import is_transient, log_fields

DatabaseRole = Literal["anon", "authenticated", "service_role"]

T = TypeVar("T")

log = structlog.get_logger(__name__)

RECONNECT_TIMEOUT = 10.0
"""Seconds a pool keeps retrying (with backoff) to replace one lost connection.

psycopg_pool then gives up on that connection (``reconnect_failed``) and shrinks; the next
request for a connection starts a fresh attempt at once (checked in the installed
psycopg_pool 3.3: ``_add_connection`` gives up, ``getconn`` grows the pool again). A short
value bounds how long a pool stays empty after its server is back: attempts come 1, 2, 4
and 3 s apart, then at the next request. With psycopg_pool's default of 300 s the pauses
double up to 128 s: after a 65 s outage the next attempt would come at 127 s.
"""


class _CheckAndPurge:
    """The pools' ``check``: psycopg_pool's own test, and on failure a sweep of the pool.

    One dead connection usually means its siblings died with it (a restart, a failover,
    ``pg_terminate_backend``). psycopg_pool retries the next pooled connection after a
    backoff of 0, 1, 2, 4 ... seconds, so ten dead connections cost one request over 30 s
    (measured: two pool timeouts in a row). Sweeping them all at the first failure means
    the retry, made at once, gets a freshly made connection.
    """

    def __init__(self) -> None:
        self.pool: AsyncConnectionPool | None = None

    async def __call__(self, conn: AsyncConnection) -> None:
        try:
            await AsyncConnectionPool.check_connection(conn)
        except Exception:
            if self.pool is not None:
                await self.pool.check()
            raise


def _connection_settings(
    *, worker: bool, statement_timeout: float | None, pooled: bool
) -> dict[str, str]:
    settings: dict[str, str] = {}
    if worker and not pooled:
        # A generic plan cached for the claim query after an idle stretch ignores the
        # partial index once the queue fills: measured as a 1,000-row claim taking 36 s.
        # Through a transaction pooler nothing is prepared, and an unnamed statement is
        # always planned for its parameters: the setting would change nothing.
        settings["plan_cache_mode"] = "force_custom_plan"
    if statement_timeout:
        settings["statement_timeout"] = f"{max(1, round(statement_timeout * 1000))}ms"
    return settings


def _set_config(settings: Mapping[str, str], *, local: bool) -> tuple[str, list[str]]:
    flag = "true" if local else "false"
    query = "SELECT " + ", ".join(f"set_config(%s, %s, {flag})" for _ in settings)
    return query, [value for pair in settings.items() for value in pair]


def _configure(settings: Mapping[str, str]) -> Callable[[AsyncConnection], Awaitable[None]] | None:
    """Session settings, made once per new connection (direct connections only).

    Settings rather than a libpq ``options`` parameter: PgBouncer and Supavisor refuse
    startup options they do not know.
    """
    if not settings:
        return None
    query, params = _set_config(settings, local=False)

    async def configure(conn: AsyncConnection) -> None:
        await conn.execute(query, params)
        await conn.commit()

    return configure


class _TransactionPoolerPool(AsyncConnectionPool):
    """A pool whose connections go through a transaction pooler (PgBouncer, Supavisor).

    A session setting would stay on a server connection that other clients get next, and
    be missing from this client's next transaction, run on another server connection. So
    when the pool has ``transaction_settings``, every checkout opens its transaction with
    them made transaction-local (``set_config(..., true)``, which is ``SET LOCAL``). A
    checkout is then one transaction: a ``conn.transaction()`` block inside it is a
    savepoint, and the whole commits when the connection goes back to the pool.

    When the server connection behind a client dies (terminated, restarted), PgBouncer
    relays the server's error and then its own, so a ``BEGIN``, ``SAVEPOINT`` or ``COMMIT``
    gets two results and psycopg raises ``InternalError`` on a connection it marks broken.
    The pool raises the lost connection it is (``OperationalError``), so that
    :func:`run_transaction` retries it and the API answers 503, as on a direct connection.
    """

    def __init__(self, *args: Any, transaction_settings: Mapping[str, str], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._settings = (
            _set_config(transaction_settings, local=True) if transaction_settings else None
        )

    @asynccontextmanager
    async def connection(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 - psycopg_pool's signature
    ) -> AsyncIterator[AsyncConnection]:
        conn: AsyncConnection | None = None
        try:
            async with super().connection(timeout) as conn:
                if self._settings:
                    await conn.execute(*self._settings)
                yield conn
        except psycopg.InternalError as exc:
            if conn is None or not conn.broken:
                raise
            raise psycopg.OperationalError(f"the connection was lost: {exc}") from exc


def _reconnect_failed(pool: AsyncConnectionPool) -> None:
    log.warning(
        "database_reconnect_failed",
        pool=pool.name,
        gave_up_after_s=pool.reconnect_timeout,
        next_attempt="when a connection is next requested",
    )


async def open_pool(
    url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    worker: bool = False,
    connect_timeout: int = 10,
    checkout_timeout: float = 30.0,
    statement_timeout: float | None = None,
    reconnect_timeout: float = RECONNECT_TIMEOUT,
    name: str | None = None,
    pooled: bool | None = None,
) -> AsyncConnectionPool:
    """Open a pool after one probing connection, so a bad URL fails with a clear message.

    Every connection is checked before it is handed out (dead ones are replaced, see
    :class:`_CheckAndPurge`); lost connections are re-made in the background, and a pool
    whose server was gone for longer than ``reconnect_timeout`` reconnects on the next
    request. ``checkout_timeout`` is how long a caller waits for a connection before
    ``PoolTimeout``. ``statement_timeout`` (seconds; None or 0: the server's setting)
    bounds every statement, lock waits included. ``worker=True`` configures each
    connection with ``plan_cache_mode = force_custom_plan``.

    ``pooled`` says whether ``url`` goes through a transaction pooler (None: as
    :func:`lqs.db.connection.transaction_pooled` decides, from LQS_DATABASE_POOLER or the
    URL). Then nothing is prepared (``prepare_threshold=None``), nothing is set for the
    session, and ``statement_timeout`` is set transaction-locally at each checkout (see
    :class:`_TransactionPoolerPool`); ``plan_cache_mode`` is not needed there.

    Raises:
        DatabaseUnavailable, UnsupportedServer: from the probing connection.
    """
    pooled = transaction_pooled(url, pooled)
    await check_async_connect(url, connect_timeout=connect_timeout, pooled=pooled)
    settings = _connection_settings(
        worker=worker, statement_timeout=statement_timeout, pooled=pooled
    )
    check = _CheckAndPurge()
    options: dict[str, Any] = {
        "min_size": min_size,
        "max_size": max_size,
        "kwargs": {"connect_timeout": connect_timeout, **prepare_options(url, pooled)},
        "check": check,
        "timeout": checkout_timeout,
        "reconnect_timeout": reconnect_timeout,
        "reconnect_failed": _reconnect_failed,
        "name": name,
        "open": False,
    }
    pool = (
        _TransactionPoolerPool(url, transaction_settings=settings, **options)
        if pooled
        else AsyncConnectionPool(url, configure=_configure(settings), **options)
    )
    check.pool = pool
    await pool.open(wait=True, timeout=float(connect_timeout))
    return pool


def worth_retrying(exc: BaseException) -> bool:
    """Whether a fresh connection can cure ``exc`` (the work may be tried once more)."""
    # A fresh connection cures a lost one, a server restart, a serialization failure or a
    # deadlock. It does not cure a wait that already spent its budget: a pool timeout, a
    # statement or lock timeout (the same lock is most likely still held), a closed pool.
    return is_transient(exc) and not isinstance(
        exc,
        PoolTimeout
        | TooManyRequests
        | PoolClosed
        | psycopg.errors.QueryCanceled
        | psycopg.errors.LockNotAvailable,
    )


async def run_transaction(
    pool: AsyncConnectionPool,
    work: Callable[[AsyncConnection], Awaitable[T]],
    *,
    retry_at_commit: bool,
) -> T:
    """Run ``work(conn)`` in one transaction; once more, on a fresh connection, if it was lost.

    The second attempt is made when the first failed with a transient error a new
    connection can cure (see :func:`lqs.db.errors.is_transient`; not a pool, statement or
    lock timeout) before COMMIT, or during COMMIT if ``retry_at_commit``: a COMMIT whose
    answer was lost may have committed, so only work that is harmless to repeat after it
    committed (deduplicated, or replayed from an idempotency record) may say so. ``work``
    must have no effect outside the transaction that cannot be repeated.

    Returns what ``work`` returned once its transaction committed.

    Raises:
        Whatever the last attempt raised (transient errors included: the caller, or the
        API's exception handler, turns those into 503).
    """
    attempt = 1
    while True:
        committing = False
        try:
            async with pool.connection() as conn, conn.transaction():
                result = await work(conn)
                committing = True
            return result
        except Exception as exc:
            if attempt > 1 or not worth_retrying(exc) or (committing and not retry_at_commit):
                raise
            log.info(
                "database_retry",
                pool=pool.name,
                at_commit=committing,
                **log_fields(exc),
            )
            attempt += 1


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


@asynccontextmanager
async def as_service_role(conn: AsyncConnection) -> AsyncIterator[AsyncConnection]:
    """Run the block as ``service_role`` inside a :func:`tenant_session`'s transaction,
    then as the user again.

    For writes a user is allowed to make but row-level security only lets the service make
    (tables whose users' policies are SELECT only): the caller first reads the row as the
    user, so what the user cannot see stays unseen (a 404), then writes here, in the same
    transaction. The switch is transaction-local like the session's own settings; when the
    block raises, the transaction is left to roll back as it is.
    """
    cur = await conn.execute(
        "SELECT current_setting('role'), current_setting('request.jwt.claims', true)"
    )
    row = await cur.fetchone()
    assert row is not None
    role, claims = row
    await conn.execute(
        "SELECT set_config('role', 'service_role', true),"
        " set_config('request.jwt.claims', %s, true)",
        (json.dumps(jwt_claims(None, "service_role")),),
    )
    yield conn
    await conn.execute(
        "SELECT set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
        (role, claims or ""),
    )
