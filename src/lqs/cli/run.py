"""``lqs serve``, ``lqs worker`` and ``lqs demo``: the long-running parts."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer
import uvicorn

from lqs.api.app import create_app
from lqs.cli._common import console, database_url, fail, settings
from lqs.cli.db import fail_on_drift, print_seed_table
from lqs.db.connection import connect
from lqs.db.migrate import migrate
from lqs.db.verify import verify
from lqs.worker.run import run_worker


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
) -> None:
    """Serve the HTTP API (lead intake) with uvicorn until interrupted."""
    config = settings()
    with database_url(config) as url:
        app = create_app(
            url, pool_min_size=config.pool_min_size, pool_max_size=config.pool_max_size
        )
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def worker(
    once: Annotated[
        bool, typer.Option("--once", help="Drain the queue and exit (the every-minute cron)")
    ] = False,
    batch_size: Annotated[int | None, typer.Option(min=1, max=10_000)] = None,
    in_flight: Annotated[
        int | None,
        typer.Option(min=1, max=16, help="Batches processed at once, each in its own transaction"),
    ] = None,
    poll_interval: Annotated[float | None, typer.Option(min=0.1, help="Seconds")] = None,
) -> None:
    """Process queued leads: as a daemon (wakes on NOTIFY), or once with --once."""
    config = settings()

    async def main(url: str) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        return await run_worker(
            url,
            batch_size=batch_size or config.worker_batch_size,
            in_flight=in_flight or config.worker_in_flight,
            poll_interval=poll_interval or config.worker_poll_interval,
            once=once,
            stop=stop,
        )

    with database_url(config) as url:
        processed = asyncio.run(main(url))
    console.print(f"processed {processed} lead(s)")


def demo() -> None:
    """Start the database (embedded unless LQS_DATABASE_URL is set), migrate and verify it."""
    config = settings()
    with (
        database_url(config) as url,
        connect(url, connect_timeout=config.connect_timeout) as conn,
    ):
        for migration in migrate(conn):
            console.print(f"applied {migration.filename}")
        report = verify(conn)
    print_seed_table(report)
    fail_on_drift(report)
    if not report.seed_rows:
        fail("the seed's verification query returned no rows")
    console.print(f"[green]Demo database ready[/green] ({len(report.seed_rows)} columns verified).")
