"""Opening connections: one place that turns driver failures into actionable errors."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal, get_args

import orjson
import psycopg
from psycopg import conninfo
from psycopg.types.json import set_json_dumps

from lqs.db.errors import DatabaseUnavailable, UnsupportedServer


def json_dumps(value: object) -> bytes | str:
    """JSON for jsonb parameters: orjson (several times faster than ``json`` on the
    processor's template variables and intake's batches), falling back to ``json`` for
    what orjson refuses (integers over 64 bits)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return json.dumps(value)


set_json_dumps(json_dumps)

MIN_SERVER_VERSION = 150000
"""PostgreSQL 15: the oldest release LQS is tested on (CI runs 15 and the embedded 16)."""


def describe_url(url: str) -> str | None:
    """Return ``user@host:port/dbname`` for messages (never the password); None if unparseable."""
    try:
        parts = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return None
    host = str(parts.get("host") or "localhost")
    port = str(parts.get("port") or "5432")
    user = str(parts.get("user") or "")
    dbname = str(parts.get("dbname") or "")
    where = host if host.startswith("/") else f"{host}:{port}"
    return f"{user + '@' if user else ''}{where}/{dbname}"


PoolerMode = Literal["transaction", "session", "none"]
"""How LQS reaches the server: through a transaction pooler (PgBouncer or Supavisor in
transaction mode, Supabase's port 6543), a session pooler, or directly."""

POOLER_SETTING = "LQS_DATABASE_POOLER"

TRANSACTION_POOLER_PORT = "6543"
"""Supabase's pooled port: Supavisor (and PgBouncer, where a project has it) in transaction mode."""

SUPABASE_POOLER_DOMAIN = "pooler.supabase.com"


def detect_pooler(url: str, setting: str | None = None) -> PoolerMode:
    """How ``url`` reaches its server: ``setting`` (LQS_DATABASE_POOLER) when given, else
    guessed from the URL.

    Port 6543 means a transaction pooler, and so does a host ending in
    ``pooler.supabase.com`` on any port but 5432 (Supavisor's session mode there); anything
    else is taken as direct. A URL that cannot be parsed is taken as direct: connecting
    reports it.

    Raises:
        ValueError: ``setting`` is not ``transaction``, ``session`` or ``none``.
    """
    if setting:
        if setting not in get_args(PoolerMode):
            raise ValueError(
                f"{POOLER_SETTING} must be transaction, session or none, not {setting!r}"
            )
        return setting  # type: ignore[return-value]
    try:
        parts = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "none"
    hosts = str(parts.get("host") or "").split(",")
    ports = str(parts.get("port") or "").split(",")
    if TRANSACTION_POOLER_PORT in ports:
        return "transaction"
    for i, host in enumerate(hosts):
        port = ports[i] if i < len(ports) else ports[-1]
        if host.lower().rstrip(".").endswith(SUPABASE_POOLER_DOMAIN):
            return "session" if port in ("", "5432") else "transaction"
    return "none"


_declared_poolers: dict[str, PoolerMode] = {}


def declare_pooler(url: str, mode: PoolerMode) -> None:
    """Record how ``url`` reaches its server, for every connection this process opens to it.

    The CLI declares LQS_DATABASE_URL's mode from its settings (``.env`` included), so code
    that only has the URL (pools, the API, the worker, admin commands) learns it without a
    flag passed through every call.
    """
    _declared_poolers[url] = mode


def transaction_pooled(url: str, pooled: bool | None = None) -> bool:
    """Whether connections to ``url`` go through a transaction pooler.

    ``pooled`` decides when given; then a mode declared for this URL
    (:func:`declare_pooler`); then LQS_DATABASE_POOLER from the environment; then the URL
    itself (:func:`detect_pooler`). Connections through a transaction pooler must not use
    prepared statements or session settings: the next transaction may run on another
    server connection, and the next client may get this one.

    Raises:
        ValueError: LQS_DATABASE_POOLER holds something else than the three modes.
    """
    if pooled is not None:
        return pooled
    mode = _declared_poolers.get(url) or detect_pooler(url, os.environ.get(POOLER_SETTING) or None)
    return mode == "transaction"


def check_server_version(version_num: int) -> None:
    """Refuse servers older than PostgreSQL 15.

    Raises:
        UnsupportedServer: with the server's version and what to do.
    """
    if version_num < MIN_SERVER_VERSION:
        major, minor = divmod(version_num, 10000)
        raise UnsupportedServer(
            f"PostgreSQL {major}.{minor} is too old: LQS needs PostgreSQL 15 or newer; "
            "upgrade the server or unset LQS_DATABASE_URL to use the embedded one"
        )


def unavailable(url: str, exc: psycopg.Error) -> DatabaseUnavailable:
    """Turn a driver error on connect into one line naming the server and the likely fix."""
    where = describe_url(url)
    if where is None:
        # The driver's message quotes the URL, password included: do not repeat it.
        return DatabaseUnavailable(
            "the database URL is not a valid PostgreSQL URL; expected "
            "postgresql://user:password@host:port/dbname in LQS_DATABASE_URL"
        )
    detail = " ".join(str(exc).split()) or type(exc).__name__
    lowered = detail.lower()
    # "authentication failed": the server's "password authentication failed", and a
    # pooler's own refusal (PgBouncer: '"trust" authentication failed' for a user it lacks).
    if "authentication failed" in lowered or ("role" in lowered and "does not exist" in lowered):
        hint = "check the user and password in LQS_DATABASE_URL"
    elif "database" in lowered and "does not exist" in lowered:
        hint = "create the database or fix its name in LQS_DATABASE_URL"
    elif "invalid" in lowered and ("dsn" in lowered or "connection option" in lowered):
        hint = "LQS_DATABASE_URL is not a valid PostgreSQL URL"
    else:
        hint = "is the server running and LQS_DATABASE_URL right?"
    return DatabaseUnavailable(f"cannot connect to PostgreSQL at {where}: {detail} ({hint})")


def prepare_options(url: str, pooled: bool | None = None) -> dict[str, None]:
    """Connection keywords for ``url``: ``prepare_threshold=None`` (no prepared statements)
    through a transaction pooler, where a statement prepared on one server connection is
    missing on the next, or worse, another client's statement of the same name runs instead.
    Direct connections keep psycopg's default (prepare after five runs): the hot queries
    depend on it."""
    return {"prepare_threshold": None} if transaction_pooled(url, pooled) else {}


def _connect_options(
    url: str, autocommit: bool, connect_timeout: int, pooled: bool | None
) -> dict[str, Any]:
    """The keywords :func:`connect` and :func:`connect_async` both pass to psycopg."""
    return {
        "autocommit": autocommit,
        "connect_timeout": connect_timeout,
        **prepare_options(url, pooled),
    }


@contextmanager
def _reported_as_unavailable(url: str) -> Iterator[None]:
    """Turn a driver error raised while connecting into :func:`unavailable`'s one line."""
    try:
        yield
    except psycopg.Error as exc:
        raise unavailable(url, exc) from exc


def connect(
    url: str, *, autocommit: bool = True, connect_timeout: int = 10, pooled: bool | None = None
) -> psycopg.Connection:
    """Open a synchronous connection for administrative commands (migrations, verify).

    Through a transaction pooler (``pooled``, or :func:`transaction_pooled`) the connection
    never prepares statements.

    Raises:
        DatabaseUnavailable: the server is unreachable or refuses us.
        UnsupportedServer: the server is older than PostgreSQL 15.
    """
    options = _connect_options(url, autocommit, connect_timeout, pooled)
    with _reported_as_unavailable(url):
        conn = psycopg.connect(url, **options)
    try:
        check_server_version(conn.info.server_version)
    except UnsupportedServer:
        conn.close()
        raise
    return conn


async def connect_async(
    url: str, *, autocommit: bool = False, connect_timeout: int = 10, pooled: bool | None = None
) -> psycopg.AsyncConnection:
    """Open an asynchronous connection, as :func:`connect` does (prepared statements
    included).

    Raises:
        DatabaseUnavailable, UnsupportedServer: as for :func:`connect`.
    """
    options = _connect_options(url, autocommit, connect_timeout, pooled)
    with _reported_as_unavailable(url):
        conn = await psycopg.AsyncConnection.connect(url, **options)
    try:
        check_server_version(conn.info.server_version)
    except UnsupportedServer:
        await conn.close()
        raise
    return conn


async def check_async_connect(
    url: str, *, connect_timeout: int = 10, pooled: bool | None = None
) -> None:
    """Connect once, asynchronously, so pool start-up fails with a clear reason.

    Raises:
        DatabaseUnavailable, UnsupportedServer: as for :func:`connect`.
    """
    conn = await connect_async(url, connect_timeout=connect_timeout, pooled=pooled)
    await conn.close()


async def notify(conn: psycopg.AsyncConnection[Any], channel: str) -> None:
    """Wake whoever LISTENs on ``channel`` (the worker's loops) once the transaction commits.

    The payload is empty: a listener only learns there is work, and drains its queue.
    """
    await conn.execute("SELECT pg_notify(%s, '')", (channel,))
