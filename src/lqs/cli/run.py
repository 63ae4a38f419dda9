"""``lqs serve``, ``lqs worker`` and ``lqs demo``: the long-running parts."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable, Iterator, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lqs.cli._common import (
    console,
    database_url,
    describe_database,
    require_migrated,
    settings,
)
from lqs.cli.compose import api_config, worker_config

if TYPE_CHECKING:
    from lqs.worker.run import WorkerTotals


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
    access_log: Annotated[
        bool,
        typer.Option(
            "--access-log/--no-access-log",
            help="One line per request: method, path, status, ms, request and client id",
        ),
    ] = True,
) -> None:
    """Serve the HTTP API (lead intake) with uvicorn until interrupted."""
    # Imported here: the web stack is most of the CLI's start-up time, and other commands
    # (a CSV import, say) need none of it.
    from lqs.api.app import create_app

    config = settings()
    api = api_config(config)
    database = describe_database(config)
    with database_url(config) as url:
        require_migrated(url, config)
        serve_app(
            create_app(url, api, access_log=access_log),
            host,
            port,
            lambda where: f"listening on {where} (database: {database})",
            graceful_seconds=5,
        )


def serve_app(
    app: Any, host: str, port: int, announce: Callable[[str], str], *, graceful_seconds: int
) -> None:
    """Serve the ASGI ``app`` with uvicorn until interrupted, printing ``announce(URL)`` once
    it accepts connections (so a script or test waiting for that line can connect at once;
    with port 0, the URL has the port the system chose)."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    class AnnouncingServer(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)  # exits the process if the app cannot start
            bound = [s for server in self.servers for s in server.sockets]
            typer.echo(announce(listening_url(host, bound)))

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                try:
                    yield
                finally:
                    # SIGTERM or SIGINT asked for this graceful stop, and it is done. uvicorn
                    # would raise the signal again with its default action, killing the
                    # process before the command stops what it started (an embedded
                    # server would be left running): return normally instead.
                    self._captured_signals.clear()

    server = AnnouncingServer(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=graceful_seconds,
        )
    )
    server.run()
    if not server.started:
        # As uvicorn.run: asked to stop before it could start.
        raise typer.Exit(code=STARTUP_FAILURE)


def listening_url(host: str, sockets: Sequence[socket.socket]) -> str:
    """The URL a server bound to ``host`` answers on: the port is the first socket's, which
    is the one the system chose when ``--port 0`` asked for any."""
    port = sockets[0].getsockname()[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class WorkerPart(StrEnum):
    PROCESS = "process"
    DISPATCH = "dispatch"


def worker(
    once: Annotated[
        bool, typer.Option("--once", help="Drain the queues and exit (the every-minute cron)")
    ] = False,
    only: Annotated[
        WorkerPart | None,
        typer.Option(help="Run only the lead processor or only the dispatcher"),
    ] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, max=10_000)] = None,
    in_flight: Annotated[
        int | None,
        typer.Option(min=1, max=16, help="Batches processed at once, each in its own transaction"),
    ] = None,
    poll_interval: Annotated[float | None, typer.Option(min=0.1, help="Seconds")] = None,
    settle: Annotated[
        float | None,
        typer.Option(min=0, help="With --once: also wait for retries due within this many s"),
    ] = None,
) -> None:
    """Process queued leads and send pending communications: as a daemon (wakes on
    NOTIFY), or once with --once."""
    from lqs.worker.run import run_worker

    config = settings()
    # The command's options override their settings, then the one composition root.
    overrides = {
        "worker_batch_size": batch_size,
        "worker_in_flight": in_flight,
        "worker_poll_interval": poll_interval,
        "dispatch_settle": settle,
    }
    work = worker_config(
        config.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    )

    async def main(url: str) -> WorkerTotals:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        return await run_worker(
            url,
            work,
            once=once,
            stop=stop,
            process=only in (None, WorkerPart.PROCESS),
            dispatch=only in (None, WorkerPart.DISPATCH),
        )

    with database_url(config) as url:
        require_migrated(url, config)
        totals = asyncio.run(main(url))
    console().print(f"processed {totals.leads} lead(s)")
    if totals.events:
        console().print(f"applied {totals.events} delivery event(s)")
    d = totals.dispatch
    if only is not WorkerPart.PROCESS:
        console().print(
            f"dispatched {d.claimed} attempt(s): {d.sent} sent, {d.retried} to retry, "
            f"{d.failed} failed, {d.rejected} rejected"
            + (f", {d.lost_leases} lease(s) lost" if d.lost_leases else "")
        )
