"""What every command shares: settings, the database URL, one-line errors, async access."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn, TypeVar

import psycopg
import typer
from pydantic import ValidationError
from rich.console import Console

from lqs.config import Settings, load_settings
from lqs.db.connection import connect_async
from lqs.db.embedded import start_embedded

console = Console()
T = TypeVar("T")


def fail(message: str) -> NoReturn:
    """Print one line on stderr and exit 1."""
    # typer.echo, not Rich: Rich wraps long lines, and an error is one line.
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=1)


def settings() -> Settings:
    """The settings, or a one-line error naming the bad variable."""
    try:
        return load_settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = "LQS_" + "_".join(str(p) for p in first["loc"]).upper()
        fail(f"{field}: {first['msg']}")


@contextmanager
def database_url(config: Settings) -> Iterator[str]:
    """The configured URL, or the embedded server's (started now, stopped after)."""
    if config.database_url:
        yield config.database_url
        return
    server = start_embedded(config.data_dir)
    try:
        yield server.url
    finally:
        server.stop()


def run_in_transaction(url: str, work: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
    """Run ``work`` on one async connection, in one transaction, and return its result."""

    async def main() -> T:
        async with await connect_async(url) as conn, conn.transaction():
            return await work(conn)

    return asyncio.run(main())
