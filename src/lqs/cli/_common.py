"""What every command shares: settings, the database URL, one-line errors, its transaction
(on the client ``--client SLUG`` names), the options several commands take."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, NamedTuple, NoReturn, TypeVar
from uuid import UUID

import psycopg
import typer
from pydantic import ValidationError
from rich.console import Console

from lqs.config import Settings, load_settings
from lqs.db.clients import Client, get_client
from lqs.db.connection import (
    connect,
    connect_async,
    declare_pooler,
    describe_url,
    detect_pooler,
    transaction_pooled,
)
from lqs.db.embedded import start_embedded
from lqs.db.errors import DatabaseNotMigrated, is_transient
from lqs.db.migrate import MigrationState, load_migrations, migration_status, read_history
from lqs.domain.text import unstorable_text
from lqs.domain.timespan import SINCE_FORMS, parse_since


@functools.cache
def _console_for(columns: str | None) -> Console:
    return Console()


def console() -> Console:
    """Standard output's console for the width ``COLUMNS`` says now: rich fixes that width
    when a console is made, and commands run in process (typer's test runner) under
    changing environments, so one made at import would keep the importer's."""
    return _console_for(os.environ.get("COLUMNS"))


T = TypeVar("T")

ClientSlugOption = Annotated[str, typer.Option("--client", help="The client's slug")]
"""``--client SLUG``: the client a command acts on (see :func:`for_client`)."""
ClientSlugArgument = Annotated[str, typer.Argument(help="The client's slug")]
"""``SLUG``: the client a ``lqs clients ...`` command acts on."""
IdleRatioOption = Annotated[
    float,
    typer.Option(
        metavar="RATIO",
        min=0.0,
        max=100.0,
        help="After each batch, wait RATIO times as long as it took (0: no pause)",
    ),
]
"""``--idle-ratio RATIO``: the pause of a batched maintenance command (retention, erasure)
that lets the pipeline beside it keep its pace."""


@dataclass
class _Verbosity:
    """What ``lqs -v`` asked this process to say (see :func:`set_verbose`)."""

    database: bool = False
    """Name the database, on stderr, the first time a command opens one."""


_verbosity = _Verbosity()


def set_verbose(verbose: bool) -> None:
    """``lqs -v``: each command that touches a database names it on stderr, once."""
    _verbosity.database = verbose


def fail(message: str) -> NoReturn:
    """Print one line on stderr and exit 1."""
    # typer.echo, not Rich: Rich wraps long lines, and an error is one line.
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=1)


def parse_id(value: str, name: str) -> UUID:
    """``value`` as a UUID, or exit with one line: "<name> must be a UUID"."""
    try:
        return UUID(value)
    except ValueError:
        fail(f"{name} must be a UUID")


def storable_option(value: str, name: str) -> str:
    """``value``, or exit with one line when PostgreSQL could not store it (a NUL, or a lone
    surrogate from bytes that are not UTF-8): "<name>: <the character and its position>"."""
    problem = unstorable_text(value)
    if problem is not None:
        fail(f"{name} holds {problem}, which PostgreSQL cannot store")
    return value


SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since",
        metavar="WHEN",
        help=f"Only since then: {SINCE_FORMS}; a time without an offset is local time",
    ),
]
"""``--since WHEN``: read with :func:`since`."""


def one_of(value: str | None, choices: type[StrEnum], option: str = "--status") -> str | None:
    """``value`` when it is one of ``choices`` (or None); otherwise exit with one line
    listing them."""
    if value is None:
        return None
    known = [choice.value for choice in choices]
    if value not in known:
        fail(f"{option} must be one of {', '.join(known)}, not {value!r}")
    return value


def since(value: str | None) -> datetime | None:
    """The moment ``--since`` names (see :func:`lqs.domain.timespan.parse_since`), or
    exit with one line listing the forms it takes."""
    if value is None:
        return None
    try:
        return parse_since(value, datetime.now(UTC))
    except ValueError as exc:
        fail(str(exc))


class IdPrefix(NamedTuple):
    """The first characters of an id, as listings show them, and the ids they start."""

    text: str
    low: UUID
    high: UUID


ID_PREFIX_MATCHES = 5
"""How many ids starting with a prefix a lookup reads: enough to name a few when several do."""

_ID_SHAPE = "00000000-0000-0000-0000-000000000000"
_HEX = frozenset("0123456789abcdef")


def id_or_prefix(value: str, noun: str, *, also: str = "") -> UUID | IdPrefix:
    """``value`` as a full id, or as the first characters of one (at least 4, dashes where
    a UUID has them) with the range of ids that start with them: a range the primary key's
    index answers, where ``id::text LIKE`` reads the whole table.

    Exits with one line when ``value`` is neither (``also`` names what else the command
    takes, e.g. "or the lead's email"), or can start no id.
    """
    try:
        return UUID(value)
    except ValueError:
        pass
    text = value.strip().lower()
    if not 4 <= len(text) <= len(_ID_SHAPE) or not set(text) <= _HEX | {"-"}:
        alternative = f" {also}" if also else ""
        fail(f"the {noun} id must be a UUID or its first characters (at least 4){alternative}")
    if any((c == "-") != (s == "-") for c, s in zip(text, _ID_SHAPE[: len(text)], strict=True)):
        fail(f"no {noun} id starts with {value!r}")  # a dash where no UUID has one, or none
    rest = _ID_SHAPE[len(text) :]
    return IdPrefix(text, UUID(text + rest), UUID(text + rest.replace("0", "f")))


def one_with_prefix(prefix: IdPrefix, found: Sequence[UUID], noun: str) -> UUID | str:
    """The one id of ``found`` (up to :data:`ID_PREFIX_MATCHES` ids starting with
    ``prefix``), or one line saying that none or several start with it."""
    if not found:
        return f"no {noun} id starts with {prefix.text!r}"
    if len(found) > 1:
        more = " and more" if len(found) >= ID_PREFIX_MATCHES else ""
        return f"{prefix.text!r} starts {', '.join(map(str, found))}{more}: give more"
    return found[0]


def settings() -> Settings:
    """The settings, or a one-line error naming the bad variable."""
    try:
        return load_settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = "LQS_" + "_".join(str(p) for p in first["loc"]).upper()
        fail(f"{field}: {first['msg']}")


@contextmanager
def database_url(config: Settings, *, session: bool = False) -> Iterator[str]:
    """The configured URL, or the embedded server's (started now, stopped after).

    The configured URL's pooler mode (LQS_DATABASE_POOLER, or detected from the URL) is
    declared for the whole process, so every connection opened to it knows whether it may
    prepare statements and keep session settings. ``session=True`` asks for a URL whose
    connections are sessions of their own, as migrations need for their advisory lock
    (see :func:`session_url`). Exits with one line when the settings cannot give one.
    With ``lqs -v``, the first call names the database on stderr.
    """
    if _verbosity.database:
        _verbosity.database = False  # once per process
        typer.echo(f"database: {describe_database(config)}", err=True)
    if config.database_url:
        url = config.database_url
        declare_pooler(url, detect_pooler(url, config.database_pooler))
        if config.direct_database_url and config.direct_database_url != url:
            declare_pooler(config.direct_database_url, "none")
        used = session_url(config, url) if session else url
        with _missing_tables_explained(used, describe_database(config)):
            yield used
        return
    if config.direct_database_url:
        fail(
            "LQS_DIRECT_DATABASE_URL is set but LQS_DATABASE_URL is not: set both (the pooled "
            "and the direct URL of one database), or neither for the embedded server"
        )
    server = start_embedded(config.data_dir)
    declare_pooler(server.url, "none")  # LQS_DATABASE_POOLER is about LQS_DATABASE_URL
    try:
        with _missing_tables_explained(server.url, describe_database(config)):
            yield server.url
    finally:
        server.stop()


def describe_database(config: Settings) -> str:
    """The database the settings name, as messages show it: ``embedded at PATH`` (the data
    directory) or LQS_DATABASE_URL without its password."""
    if not config.database_url:
        return f"embedded at {config.data_dir.resolve()}"
    return describe_url(config.database_url) or "LQS_DATABASE_URL (not a valid PostgreSQL URL)"


def _migration_states(url: str) -> set[MigrationState]:
    with connect(url) as conn:
        return {s.state for s in migration_status(load_migrations(), read_history(conn))}


@contextmanager
def _missing_tables_explained(url: str, database: str) -> Iterator[None]:
    """A table missing because migrations are pending becomes :class:`DatabaseNotMigrated`
    (one line naming ``lqs db migrate``); on a database with every migration applied it
    stays what it is, a bug."""
    try:
        yield
    except psycopg.errors.UndefinedTable as exc:
        if MigrationState.PENDING in _migration_states(url):
            raise DatabaseNotMigrated(database) from exc
        raise


def require_migrated(url: str, config: Settings) -> None:
    """Refuse, with one line naming ``lqs db migrate``, to run a long-lived process (the API,
    the worker) on a database no LQS migration was ever applied to. A database with only
    some pending (an upgrade rolling out) is served: ``/readyz`` reports it until migrated.

    A database that cannot answer now (down, refusing connections, cancelling statements)
    is not judged: the worker waits for it, the API answers 503 until it is back.

    Raises:
        DatabaseNotMigrated: no migration is recorded as applied.
    """
    try:
        states = _migration_states(url)
    except Exception as exc:
        if not is_transient(exc):
            raise
        return
    if states <= {MigrationState.PENDING}:
        raise DatabaseNotMigrated(describe_database(config))


def session_url(config: Settings, url: str) -> str:
    """Where work that needs a session of its own goes (migrations: a session advisory lock
    held across transactions): LQS_DIRECT_DATABASE_URL when set, else ``url`` itself unless
    it goes through a transaction pooler, where the lock would stay behind on a server
    connection other clients share; then exit with one line naming the setting."""
    if config.database_url and config.direct_database_url:
        return config.direct_database_url
    if config.database_url and transaction_pooled(url):
        fail(
            "LQS_DATABASE_URL goes through a transaction pooler, where migrations cannot hold "
            "their session advisory lock: set LQS_DIRECT_DATABASE_URL to the database's direct "
            "or session-mode URL (Supabase: port 5432)"
        )
    return url


def run_in_transaction(url: str, work: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
    """Run ``work`` on one async connection, in one transaction, and return its result."""

    async def main() -> T:
        async with await connect_async(url) as conn, conn.transaction():
            return await work(conn)

    return asyncio.run(main())


def in_transaction(work: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction on the configured database (see :func:`database_url`)
    and return its result."""
    with database_url(settings()) as url:
        return run_in_transaction(url, work)


def for_client(slug: str, work: Callable[[psycopg.AsyncConnection, Client], Awaitable[T]]) -> T:
    """Find the client with this slug, then run ``work`` on it, in one transaction on the
    configured database, and return its result.

    Raises:
        ClientNotFound: no client has this slug (``lqs`` prints its message as one line).
    """

    async def found_then_work(conn: psycopg.AsyncConnection) -> T:
        return await work(conn, await get_client(conn, slug))

    return in_transaction(found_then_work)
