"""``lqs serve``, ``lqs worker`` and ``lqs demo``: the long-running parts."""

from __future__ import annotations

import asyncio
import signal
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from lqs.cli._common import console, database_url, direct_url, fail, settings
from lqs.config import Settings
from lqs.domain.unsubscribe import UnsubscribeLinks

if TYPE_CHECKING:
    from lqs.worker.dispatcher import DispatcherOptions
    from lqs.worker.run import WorkerTotals


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
) -> None:
    """Serve the HTTP API (lead intake) with uvicorn until interrupted."""
    # Imported here: the web stack is most of the CLI's start-up time, and other commands
    # (a CSV import, say) need none of it.
    import uvicorn

    from lqs.api.app import create_app
    from lqs.api.deps import WebhookConfig
    from lqs.api.readiness import ReadinessOptions

    config = settings()
    with database_url(config) as url:
        app = create_app(
            url,
            pool_min_size=config.pool_min_size,
            pool_max_size=config.pool_max_size,
            webhook_pool_max_size=config.webhook_pool_max_size,
            pool_timeout=config.api_pool_timeout,
            statement_timeout=config.api_statement_timeout or None,
            webhook_config=WebhookConfig(config.public_base_url, config.webhook_tolerance),
            unsubscribe_links=unsubscribe_links(config),
            readiness=ReadinessOptions(
                require_worker=config.readyz_require_worker,
                worker_max_age=config.readyz_worker_max_age,
            ),
        )
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
        )


def unsubscribe_links(config: Settings) -> UnsubscribeLinks | None:
    """The unsubscribe link signer, if a secret is configured."""
    if config.unsubscribe_secret is None:
        return None
    try:
        return UnsubscribeLinks(
            config.unsubscribe_secret.get_secret_value(),
            config.public_base_url,
            timedelta(days=config.unsubscribe_ttl_days),
        )
    except ValueError as exc:
        fail(f"LQS_UNSUBSCRIBE_SECRET: {exc}")


def dispatcher_options(config: Settings) -> DispatcherOptions:
    """The dispatcher's options from the settings."""
    # Imported here: the providers pull in HTTP and crypto libraries other commands skip.
    from lqs.domain.delivery import RetryPolicy
    from lqs.worker.dispatcher import DispatcherOptions
    from lqs.worker.limits import ProviderLimits

    return DispatcherOptions(
        batch_size=config.dispatch_batch_size,
        concurrency=config.dispatch_concurrency,
        lease_seconds=config.dispatch_lease_seconds,
        timeout=config.dispatch_timeout,
        policy=RetryPolicy(
            base_delay=config.dispatch_retry_base_delay,
            max_delay=max(config.dispatch_retry_max_delay, config.dispatch_retry_base_delay),
            horizon=config.dispatch_retry_horizon,
        ),
        limits={
            name: ProviderLimits(rate=limit.rate, concurrency=limit.concurrency)
            for name, limit in config.provider_limits.items()
        },
        failover_cooldown=config.dispatch_failover_cooldown,
        allow_private_webhooks=config.allow_private_webhooks,
        unsubscribe=unsubscribe_links(config),
    )


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

    async def main(url: str) -> WorkerTotals:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        return await run_worker(
            url,
            direct_url=direct_url(config),
            batch_size=batch_size or config.worker_batch_size,
            in_flight=in_flight or config.worker_in_flight,
            poll_interval=poll_interval or config.worker_poll_interval,
            once=once,
            stop=stop,
            process=only in (None, WorkerPart.PROCESS),
            dispatch=only in (None, WorkerPart.DISPATCH),
            dispatcher_options=dispatcher_options(config),
            settle=config.dispatch_settle if settle is None else settle,
            park_after=config.worker_park_after,
            shutdown_grace=config.worker_shutdown_grace,
        )

    with database_url(config) as url:
        totals = asyncio.run(main(url))
    console.print(f"processed {totals.leads} lead(s)")
    d = totals.dispatch
    if only is not WorkerPart.PROCESS:
        console.print(
            f"dispatched {d.claimed} attempt(s): {d.sent} sent, {d.retried} to retry, "
            f"{d.failed} failed, {d.rejected} rejected"
            + (f", {d.lost_leases} lease(s) lost" if d.lost_leases else "")
        )
