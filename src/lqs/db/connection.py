"""Opening connections: one place that turns driver failures into actionable errors."""

from __future__ import annotations

import json

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
    if "password authentication failed" in lowered or (
        "role" in lowered and "does not exist" in lowered
    ):
        hint = "check the user and password in LQS_DATABASE_URL"
    elif "database" in lowered and "does not exist" in lowered:
        hint = "create the database or fix its name in LQS_DATABASE_URL"
    elif "invalid" in lowered and ("dsn" in lowered or "connection option" in lowered):
        hint = "LQS_DATABASE_URL is not a valid PostgreSQL URL"
    else:
        hint = "is the server running and LQS_DATABASE_URL right?"
    return DatabaseUnavailable(f"cannot connect to PostgreSQL at {where}: {detail} ({hint})")


def connect(url: str, *, autocommit: bool = True, connect_timeout: int = 10) -> psycopg.Connection:
    """Open a synchronous connection for administrative commands (migrations, verify).

    Raises:
        DatabaseUnavailable: the server is unreachable or refuses us.
        UnsupportedServer: the server is older than PostgreSQL 15.
    """
    try:
        conn = psycopg.connect(url, autocommit=autocommit, connect_timeout=connect_timeout)
    except psycopg.Error as exc:
        raise unavailable(url, exc) from exc
    try:
        check_server_version(conn.info.server_version)
    except UnsupportedServer:
        conn.close()
        raise
    return conn


async def connect_async(
    url: str, *, autocommit: bool = False, connect_timeout: int = 10
) -> psycopg.AsyncConnection:
    """Open an asynchronous connection, with the same errors as :func:`connect`.

    Raises:
        DatabaseUnavailable: the server is unreachable or refuses us.
        UnsupportedServer: the server is older than PostgreSQL 15.
    """
    try:
        conn = await psycopg.AsyncConnection.connect(
            url, autocommit=autocommit, connect_timeout=connect_timeout
        )
    except psycopg.Error as exc:
        raise unavailable(url, exc) from exc
    try:
        check_server_version(conn.info.server_version)
    except UnsupportedServer:
        await conn.close()
        raise
    return conn


async def check_async_connect(url: str, *, connect_timeout: int = 10) -> None:
    """Connect once, asynchronously, so pool start-up fails with a clear reason.

    Raises:
        DatabaseUnavailable, UnsupportedServer: as for :func:`connect`.
    """
    conn = await connect_async(url, connect_timeout=connect_timeout)
    await conn.close()
