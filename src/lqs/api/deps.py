"""What handlers need, as FastAPI dependencies: ``Annotated`` aliases to declare parameters.

The objects :func:`lqs.api.app.create_app` opens at start-up live on ``app.state``; only
this module reads them there. A dependency that refuses the request raises
:class:`~lqs.api.errors.ApiError`. FastAPI resolves a handler's dependencies in the order
of its parameters, so a handler declares :data:`Principal` first: an unauthenticated
request is refused before its body is read.

The body's JSON (:data:`JsonBody`) is refused with 400 when it is not plain JSON a
database can keep: nested more than :data:`MAX_JSON_DEPTH` levels, an integer over
``MAX_NUMBER_DIGITS`` digits, a number too large for a float, or ``NaN``/``Infinity``.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from lqs.api.access_log import CLIENT_ID_STATE
from lqs.api.browser_session import CsrfTokens
from lqs.api.errors import ApiError
from lqs.api.key_cache import ApiKeyCache
from lqs.api.limits import RateLimiter, SignInLimits, retry_after_header
from lqs.api.metrics import UNSUBSCRIBES
from lqs.api.readiness import Readiness
from lqs.api.tokens import Claims, InvalidToken, TokenVerifier
from lqs.db.clients import ApiPrincipal, authenticate_api_key
from lqs.db.pool import run_transaction, tenant_session
from lqs.db.users import session_is_current
from lqs.domain.leads import MAX_NUMBER_DIGITS, FieldError
from lqs.domain.unsubscribe import InvalidUnsubscribeToken, Unsubscribe, UnsubscribeLinks


@dataclass(frozen=True)
class WebhookConfig:
    """What the delivery webhook receivers need from the settings."""

    public_base_url: str
    tolerance: float = 300.0


MAX_JSON_DEPTH = 32
"""The deepest body accepted: a batch of leads with nested custom fields needs 7 levels."""
_CONTAINERS = (dict, list)


def _from_app_state(name: str) -> Callable[[Request], Awaitable[Any]]:
    """A dependency that answers ``app.state.<name>``, set by the lifespan."""

    async def read(request: Request) -> Any:
        return getattr(request.app.state, name)

    return read


Pool = Annotated[AsyncConnectionPool, Depends(_from_app_state("pool"))]
"""The pool for lead intake and everything but delivery webhooks and unsubscribes."""
WebhookPool = Annotated[AsyncConnectionPool, Depends(_from_app_state("webhook_pool"))]
"""The pool for delivery webhooks and unsubscribe clicks (see :mod:`lqs.api.app`)."""
WebhookSettings = Annotated[WebhookConfig, Depends(_from_app_state("webhook_config"))]
Limiter = Annotated[RateLimiter, Depends(_from_app_state("rate_limiter"))]
ApiKeys = Annotated[ApiKeyCache, Depends(_from_app_state("api_keys"))]
"""This process's memory of API key lookups (:mod:`lqs.api.key_cache`)."""
SignInGuard = Annotated[SignInLimits, Depends(_from_app_state("sign_in_limits"))]
"""Sign-in's limits: attempts per address and per email, password-hashing slots."""
Links = Annotated[UnsubscribeLinks | None, Depends(_from_app_state("unsubscribe_links"))]
"""The unsubscribe links' signer, or None when they are not configured."""
ReadinessChecker = Annotated[Readiness, Depends(_from_app_state("readiness"))]
Tokens = Annotated[TokenVerifier | None, Depends(_from_app_state("tokens"))]
"""The users' token verifier, or None when no JWT secret or JWKS URL is configured."""
Csrf = Annotated[CsrfTokens, Depends(_from_app_state("csrf"))]
"""The dashboard's CSRF tokens (:mod:`lqs.api.browser_session`)."""


def _unauthenticated(code: str, message: str, problem: str) -> ApiError:
    """401 with the ``Bearer`` challenge, the ``Authorization`` header at fault for ``problem``."""
    return ApiError(
        401,
        code,
        message,
        fields=[FieldError("Authorization", problem)],
        headers={"WWW-Authenticate": "Bearer"},
    )


async def _principal(request: Request, pool: Pool, limiter: Limiter, keys: ApiKeys) -> ApiPrincipal:
    """Who the request's API key speaks for, after taking a token of its rate limit.

    Raises:
        ApiError: 401 for a missing, unknown or revoked key; 429 over the key's rate limit.
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthenticated(
            "missing_api_key",
            "send the client's API key as `Authorization: Bearer lqs_...`",
            "missing",
        )
    key = token.strip()
    principal = await keys.principal(
        key,
        lambda: run_transaction(
            pool, lambda conn: authenticate_api_key(conn, key), retry_at_commit=True
        ),
    )
    if principal is None:
        raise _unauthenticated(
            "invalid_api_key",
            "the API key is unknown or has been revoked",
            "unknown or revoked key",
        )
    setattr(request.state, CLIENT_ID_STATE, principal.client_id)  # for the access log
    wait = limiter.acquire(principal.key_id, principal.rate_limit_per_minute)
    if wait > 0:
        raise ApiError(
            429,
            "rate_limited",
            f"more than {principal.rate_limit_per_minute} requests a minute for this key",
            headers=retry_after_header(wait),
        )
    return principal


Principal = Annotated[ApiPrincipal, Depends(_principal)]
"""The authenticated client (``Authorization: Bearer lqs_...``), within its rate limit."""

API_KEY_PREFIX = "lqs_"


async def _user(request: Request, tokens: Tokens) -> Claims:
    """Who the request's bearer token (a Supabase-compatible JWT) speaks for.

    Raises:
        ApiError: 503 when no way to verify tokens is configured; 401 for a missing,
            malformed, forged or expired token, another audience or an unaccepted role,
            and for an API key (which only sends leads in).
    """
    if tokens is None:
        raise ApiError(
            503,
            "auth_not_configured",
            "users' tokens cannot be verified here: set LQS_JWT_SECRET or LQS_JWKS_URL",
        )
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthenticated(
            "missing_token", "send a user's token as `Authorization: Bearer <jwt>`", "missing"
        )
    if token.startswith(API_KEY_PREFIX):
        raise _unauthenticated(
            "api_key_not_accepted",
            "an API key only sends leads in; reading needs a user's token (POST /auth/login)",
            "an API key, not a user's token",
        )
    try:
        claims = await tokens.verify(token)
    except InvalidToken as exc:
        raise _unauthenticated("invalid_token", str(exc), str(exc)) from None
    return claims


User = Annotated[Claims, Depends(_user)]
"""The signed-in user (or service role) of ``Authorization: Bearer <jwt>``."""


class SessionEnded(ApiError):
    """Raised by :func:`session_as` when the token's user signs in with LQS's credentials
    and has been disabled, or changed their password after the token was issued."""

    def __init__(self) -> None:
        problem = "this session has ended: the user was disabled or their password changed"
        super().__init__(
            401,
            "session_ended",
            f"{problem}; sign in again",
            fields=[FieldError("Authorization", problem)],
            headers={"WWW-Authenticate": "Bearer"},
        )


def issued_at(user: Claims) -> datetime | None:
    """The token's ``iat`` as a moment, or None when it has none (or not a number)."""
    iat = user.claims.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, int | float) or not math.isfinite(iat):
        return None
    try:
        return datetime.fromtimestamp(iat, UTC)
    except (OverflowError, OSError, ValueError):
        return None


@asynccontextmanager
async def session_as(pool: AsyncConnectionPool, user: Claims) -> AsyncIterator[AsyncConnection]:
    """A transaction run as ``user``, in the database (:func:`~lqs.db.pool.tenant_session`):
    row-level security decides what it sees. For :data:`UserSession` and the dashboard's
    pages alike.

    A signed-in user's token is first checked to be still current, in the same
    transaction (one query, :func:`~lqs.db.users.session_is_current`).

    Raises:
        SessionEnded: the user was disabled, or their password changed after the token
            was issued.
    """
    extra = {k: v for k, v in user.claims.items() if k not in ("role", "sub")}
    async with tenant_session(pool, user.user_id, role=user.role, extra_claims=extra) as conn:
        if user.role == "authenticated" and not await session_is_current(conn, issued_at(user)):
            raise SessionEnded
        yield conn


async def _user_session(user: User, pool: Pool) -> AsyncIterator[AsyncConnection]:
    async with session_as(pool, user) as conn:
        yield conn


async def _current_user(user: User, pool: Pool) -> Claims:
    """:data:`User`, once checked to be still current (:func:`session_as`), for handlers
    that open their session later, such as a streamed response's."""
    async with session_as(pool, user):
        pass
    return user


CurrentUser = Annotated[Claims, Depends(_current_user)]
"""As :data:`User`, refused with 401 once its session has ended (:class:`SessionEnded`)."""

UserSession = Annotated[AsyncConnection, Depends(_user_session)]
"""A connection in a transaction run as the request's user (reads; it commits at the end)."""
UserTransaction = Annotated[AsyncConnection, Depends(_user_session, scope="function")]
"""As :data:`UserSession`, but committed when the handler returns, before the response is
sent (writes: a failed commit is answered as an error, never after a success)."""


async def _idempotency_key(request: Request) -> str | None:
    """The ``Idempotency-Key`` header, if sent.

    Raises:
        ApiError: 400, the key is empty, longer than 255 characters or not printable.
    """
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isprintable():
        raise ApiError(
            400,
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 printable characters",
            fields=[FieldError("Idempotency-Key", "1 to 255 printable characters")],
        )
    return key


IdempotencyKey = Annotated[str | None, Depends(_idempotency_key)]


class _NotPlainJson(ValueError):
    """A number or constant in the body that JSON or jsonb cannot carry."""


def _bounded_int(text: str) -> int:
    # Checked before conversion: Python's own limit (4,300 digits) can be lifted by the
    # environment, and converting a long digit string costs quadratic time.
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise _NotPlainJson(f"an integer has more than {MAX_NUMBER_DIGITS} digits")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotPlainJson(f"the number {text[:40]} is too large")
    return value


def _no_constant(name: str) -> Any:
    raise _NotPlainJson(f"{name} is not a JSON value")


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests more than ``limit`` arrays/objects: one level at a time,
    so without recursion, and stopping at the first level past the limit."""
    level = [value]
    for _ in range(limit):
        deeper: list[Any] = []
        for item in level:
            children = item.values() if type(item) is dict else item
            deeper += [child for child in children if type(child) in _CONTAINERS]
        if not deeper:
            return False
        level = deeper
    return True


def _malformed(message: str) -> ApiError:
    return ApiError(
        400,
        "invalid_json",
        f"the body is not valid JSON: {message}",
        fields=[FieldError("body", "not valid JSON")],
    )


async def _json_body(request: Request) -> Any:
    """The body's JSON value.

    Raises:
        ApiError: 400, the body is not plain JSON (see the module's docstring).
    """
    raw = await request.body()
    try:
        payload = json.loads(
            raw,
            parse_int=_bounded_int,
            parse_float=_finite_float,
            parse_constant=_no_constant,
        )
    except RecursionError:
        raise _malformed(f"it nests more than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, _NotPlainJson
        raise _malformed(str(exc)) from exc
    # A body with no more brackets than the limit cannot nest deeper (bytes over-count in
    # UTF-16/32, which only means walking it).
    brackets = raw.count(b"[") + raw.count(b"{")
    if brackets > MAX_JSON_DEPTH and _deeper_than(payload, MAX_JSON_DEPTH):
        raise _malformed(f"it nests more than {MAX_JSON_DEPTH} levels")
    return payload


JsonBody = Annotated[Any, Depends(_json_body)]


async def _unsubscribe_token(token: str, links: Links) -> Unsubscribe:
    """Who the path's unsubscribe token names.

    Raises:
        ApiError: 503 when unsubscribe links are not configured; 400 for a malformed,
            forged or expired token.
    """
    if links is None:
        UNSUBSCRIBES.labels(outcome="not_configured").inc()
        raise ApiError(
            503, "unsubscribe_not_configured", "unsubscribe links are not configured here"
        )
    try:
        return links.read(token)
    except InvalidUnsubscribeToken as exc:
        UNSUBSCRIBES.labels(outcome="invalid_token").inc()
        raise ApiError(
            400, "invalid_unsubscribe_token", str(exc), fields=[FieldError("token", str(exc))]
        ) from None


UnsubscribeToken = Annotated[Unsubscribe, Depends(_unsubscribe_token)]
"""The recipient a valid ``/u/{token}`` path names."""
