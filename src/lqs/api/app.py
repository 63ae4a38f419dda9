"""The ASGI application: ``create_app(url)`` wires the pool, limits and routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from lqs.api import intake
from lqs.api.limits import MAX_BODY_BYTES, BodySizeLimit, RateLimiter
from lqs.db.pool import open_pool


def create_app(
    database_url: str,
    *,
    pool_min_size: int = 1,
    pool_max_size: int = 10,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The API with its own pool, opened at start-up and closed at shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await open_pool(
            database_url, min_size=pool_min_size, max_size=pool_max_size
        )
        app.state.rate_limiter = RateLimiter()
        try:
            yield
        finally:
            await app.state.pool.close()

    app = FastAPI(title="LQS", version="0.1.0", lifespan=lifespan)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    app.include_router(intake.router)

    @app.get("/healthz")
    async def health() -> JSONResponse:
        async with app.state.pool.connection() as conn:
            await conn.execute("SELECT 1")
        return JSONResponse({"status": "ok"})

    return app
