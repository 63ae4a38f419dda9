"""The ASGI application: ``create_app(url)`` wires the pool, limits and routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from lqs.api import intake, metrics, unsubscribe, webhooks
from lqs.api.limits import MAX_BODY_BYTES, BodySizeLimit, RateLimiter
from lqs.api.webhooks import WebhookConfig
from lqs.db.pool import open_pool
from lqs.domain.unsubscribe import UnsubscribeLinks


def create_app(
    database_url: str,
    *,
    pool_min_size: int = 1,
    pool_max_size: int = 10,
    max_body_bytes: int = MAX_BODY_BYTES,
    webhook_config: WebhookConfig | None = None,
    unsubscribe_links: UnsubscribeLinks | None = None,
) -> FastAPI:
    """The API with its own pool, opened at start-up and closed at shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await open_pool(
            database_url, min_size=pool_min_size, max_size=pool_max_size
        )
        app.state.rate_limiter = RateLimiter()
        app.state.webhook_config = webhook_config or WebhookConfig("http://127.0.0.1:8000")
        app.state.unsubscribe_links = unsubscribe_links
        try:
            yield
        finally:
            await app.state.pool.close()

    app = FastAPI(title="LQS", version="0.1.0", lifespan=lifespan)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    app.include_router(intake.router)
    app.include_router(webhooks.router)
    app.include_router(unsubscribe.router)
    app.include_router(metrics.router)

    @app.get("/healthz")
    async def health() -> JSONResponse:
        async with app.state.pool.connection() as conn:
            await conn.execute("SELECT 1")
        return JSONResponse({"status": "ok"})

    return app
