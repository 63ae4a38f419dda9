"""The ASGI application: ``create_app(url, config)`` wires the pools, limits, routers and errors.

Two pools, so that one kind of traffic cannot starve the other: delivery webhooks and
unsubscribe clicks (``app.state.webhook_pool``) wait on locks the dispatcher and other
webhooks hold on ``communications``; lead intake and everything else use
``app.state.pool``. API connections carry a ``statement_timeout``, so a handler stuck
behind a lock gives its connection back.

Handlers and their dependencies (:mod:`lqs.api.deps`, which read what the lifespan puts
on ``app.state``) refuse a request by raising :class:`~lqs.api.errors.ApiError`, answered
by :func:`~lqs.api.errors.render_api_error`. One more exception handler turns what else
escapes a route into the JSON error shape: a transient database failure (connection lost,
server unreachable or restarting, pool or statement timeout) is a 503 with
``Retry-After``; anything else a logged 500 without a traceback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from psycopg_pool import AsyncConnectionPool

from lqs.api import (
    auth,
    health,
    intake,
    metrics,
    pages,
    tenant,
    tenant_admin,
    unsubscribe,
    webhooks,
)
from lqs.api.access_log import AccessLog
from lqs.api.browser_session import secure_cookies_from
from lqs.api.deps import WebhookConfig
from lqs.api.errors import ApiError, render_api_error, render_validation_error
from lqs.api.key_cache import MAX_TTL, ApiKeyCache
from lqs.api.limits import (
    MAX_BODY_BYTES,
    SIGN_INS_PER_ADDRESS_PER_MINUTE,
    BodySizeLimit,
    RateLimiter,
    SignInLimits,
    retry_after_header,
)
from lqs.api.readiness import DATABASE_RETRY_AFTER, Readiness, ReadinessOptions
from lqs.api.tokens import TokenVerifier
from lqs.api.webhook_cache import WebhookCandidateCache
from lqs.db.errors import DatabaseError, is_transient, log_fields
from lqs.db.pool import open_pool
from lqs.db.users import LOCKOUT, MAX_FAILED_SIGN_INS
from lqs.domain.unsubscribe import UnsubscribeLinks

log = structlog.get_logger(__name__)


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    """503 with ``Retry-After`` for a transient database failure, else a logged 500."""
    route = getattr(request.scope.get("route"), "path", None)  # the template: no tokens
    if is_transient(exc):
        log.warning(
            "database_unavailable",
            method=request.method,
            route=route,
            **log_fields(exc),
        )
        return ApiError(
            503,
            "database_unavailable",
            "the database is unavailable for a moment; retry after Retry-After seconds",
            headers=retry_after_header(DATABASE_RETRY_AFTER),
        ).response()
    log.error("unhandled_exception", method=request.method, route=route, exc_info=exc)
    return ApiError(500, "internal_error", "an unexpected error occurred; it was logged").response()


@dataclass(frozen=True)
class ApiConfig:
    """Everything the API takes from the settings; built in one place,
    :func:`lqs.cli.compose.api_config` (tests: ``tests/configs.py``)."""

    pool_min_size: int
    pool_max_size: int
    webhook_pool_max_size: int
    connect_timeout: int
    pool_timeout: float
    """Seconds a request waits for a pooled connection before a 503."""
    statement_timeout: float | None
    """Seconds any one statement may run (None or 0: the server's setting) before it is
    cancelled and the request answered 503."""
    webhook: WebhookConfig
    unsubscribe_links: UnsubscribeLinks | None
    readiness: ReadinessOptions
    tokens: TokenVerifier | None
    """Verifies users' bearer tokens (the tenant API); None: that API answers 503."""
    csrf_key: bytes
    """Signs the dashboard's CSRF tokens (:mod:`lqs.api.browser_session`)."""
    sign_in_attempts_per_minute: int = SIGN_INS_PER_ADDRESS_PER_MINUTE
    """Sign-in attempts a minute from one client address, per process (then 429)."""
    api_key_cache_seconds: float = MAX_TTL
    """Seconds each process remembers an API key's lookup (:mod:`lqs.api.key_cache`), and
    a webhook's candidate clients (:mod:`lqs.api.webhook_cache`)."""


def create_app(
    database_url: str,
    config: ApiConfig,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    pooled: bool | None = None,
    access_log: bool = False,
) -> FastAPI:
    """The API with its two pools, opened at start-up and closed at shutdown.

    ``pooled``: whether ``database_url`` goes through a transaction pooler (None:
    detected, see :func:`lqs.db.pool.open_pool`). ``access_log``: log one line per
    request (:class:`~lqs.api.access_log.AccessLog`).

    Start-up fails (DatabaseUnavailable, UnsupportedServer) when the database cannot be
    reached; once running, the pools reconnect on their own.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            # Both pools share the connection settings; each closes at shutdown.
            async def pool(name: str, min_size: int, max_size: int) -> AsyncConnectionPool:
                opened = await open_pool(
                    database_url,
                    min_size=min_size,
                    max_size=max_size,
                    connect_timeout=config.connect_timeout,
                    checkout_timeout=config.pool_timeout,
                    statement_timeout=config.statement_timeout,
                    name=name,
                    pooled=pooled,
                )
                stack.push_async_callback(opened.close)
                return opened

            app.state.pool = await pool("api", config.pool_min_size, config.pool_max_size)
            app.state.webhook_pool = await pool(
                "api-webhooks",
                min(config.pool_min_size, config.webhook_pool_max_size),
                config.webhook_pool_max_size,
            )
            app.state.readiness = Readiness(app.state.pool, config.readiness)
            app.state.rate_limiter = RateLimiter()
            app.state.api_keys = ApiKeyCache(config.api_key_cache_seconds)
            app.state.webhook_candidates = WebhookCandidateCache(config.api_key_cache_seconds)
            app.state.sign_in_limits = SignInLimits.create(
                MAX_FAILED_SIGN_INS,
                LOCKOUT.total_seconds(),
                per_address_per_minute=config.sign_in_attempts_per_minute,
            )
            app.state.webhook_config = config.webhook
            app.state.unsubscribe_links = config.unsubscribe_links
            app.state.tokens = config.tokens
            yield

    # FastAPIOffline: /docs (Swagger UI) and /redoc load their assets from this package,
    # so they work with no internet access.
    app = FastAPIOffline(title="LQS", version="0.1.0", lifespan=lifespan)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    if access_log:  # added last, so outermost: it logs the 413s too
        app.add_middleware(AccessLog)
    # One handler. Registered for the database's exception classes too, not only for
    # Exception: Starlette re-raises what reaches its last-resort (Exception) handler
    # after answering, so the server would log every 503 of an outage as a crash.
    app.add_exception_handler(ApiError, render_api_error)
    app.add_exception_handler(RequestValidationError, render_validation_error)
    for kind in (psycopg.Error, DatabaseError, Exception):
        app.add_exception_handler(kind, _unhandled)
    app.include_router(intake.router)
    app.include_router(auth.router)
    app.include_router(tenant.router)
    app.include_router(webhooks.router)
    app.include_router(unsubscribe.router)
    app.include_router(metrics.router)
    app.include_router(health.router)
    app.include_router(tenant_admin.router)
    pages.install(
        app, config.csrf_key, secure_cookies=secure_cookies_from(config.webhook.public_base_url)
    )

    def openapi() -> dict[str, Any]:
        # FastAPI's document, plus what the request bodies refer to and the two schemes:
        # clients' API keys (lead intake) and users' tokens.
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, routes=app.routes)
            components = document.setdefault("components", {})
            components.setdefault("schemas", {}).update(intake.SCHEMAS)
            components["securitySchemes"] = {**intake.SECURITY_SCHEMES, **auth.SECURITY_SCHEMES}
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
