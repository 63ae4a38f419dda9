"""Sign-in without Supabase: ``POST /auth/login``, and ``GET /v1/me`` for any user's token.

``POST /auth/login`` takes ``{"email", "password"}`` of a user ``lqs users add`` created
and answers a Supabase-compatible access token (HS256, ``LQS_JWT_SECRET``, see
:mod:`lqs.api.tokens`). :func:`sign_in` is the whole decision, for any caller that signs
users in (the dashboard's form reuses it):

- an unknown email and a wrong password get the same 401 in about the same time (an
  unknown email is checked against a dummy hash);
- :data:`~lqs.db.users.MAX_FAILED_SIGN_INS` wrong passwords in a row lock the user out
  for :data:`~lqs.db.users.LOCKOUT`: 429 with ``Retry-After``, without checking the password.
  Each attempt is counted before its password is checked, so a burst of concurrent
  attempts gets no more password checks than that;
- attempts are limited per client address (:data:`~lqs.api.limits.SIGN_INS_PER_ADDRESS_PER_MINUTE`
  a minute: 429 ``rate_limited``) and per email, counted alike for every email, a user's or
  not (:class:`~lqs.api.limits.AttemptLockout`), so a lockout does not tell which emails
  exist;
- a disabled user gets 403, once the password is right (so it says nothing to someone
  who does not know it);
- without ``LQS_JWT_SECRET`` (no secret, or only a JWKS: Supabase signs users in), 503.

Hashing runs in a worker thread (argon2id takes a fifth of a second of CPU and 64 MiB), so
the event loop keeps serving meanwhile, in at most :data:`~lqs.api.limits.HASHING_SLOTS`
threads at once per process: a few more sign-ins wait their turn, and beyond that queue
they get 503 ``sign_in_busy`` with ``Retry-After`` rather than piling up. An email or
password with a NUL or a lone surrogate is refused with 422 before any of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, Request
from psycopg_pool import AsyncConnectionPool

from lqs.api.deps import JsonBody, Pool, SignInGuard, Tokens, User, UserSession
from lqs.api.errors import ApiError, error_responses
from lqs.api.limits import Busy, SignInLimits, retry_after_header
from lqs.api.tokens import TokenVerifier
from lqs.db.pool import run_transaction
from lqs.db.users import (
    count_sign_in_attempt,
    find_credentials,
    own_profile,
    record_successful_sign_in,
)
from lqs.domain.leads import FieldError
from lqs.domain.passwords import (
    MAX_LENGTH,
    dummy_hash,
    hash_password,
    needs_rehash,
    verify_password,
)
from lqs.domain.text import unstorable_text

router = APIRouter()

MAX_EMAIL_LENGTH = 320
_WRONG = "the email or password is wrong"
T = TypeVar("T")

SECURITY_SCHEMES: dict[str, Any] = {
    "userToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A user's access token: from `POST /auth/login`, or Supabase Auth's"
        " (HS256 with LQS_JWT_SECRET, or RS256/ES256 from LQS_JWKS_URL).",
    }
}


@dataclass(frozen=True)
class SignedInUser:
    id: UUID
    email: str
    client_id: UUID
    role: str


@dataclass(frozen=True)
class SignedIn:
    """A successful sign-in: the access token, its lifetime in seconds, and who it is for."""

    access_token: str
    expires_in: int
    user: SignedInUser

    def as_json(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "token_type": "bearer",
            "expires_in": self.expires_in,
            "user": {
                "id": str(self.user.id),
                "email": self.user.email,
                "client_id": str(self.user.client_id),
                "role": self.user.role,
            },
        }


def _wrong() -> ApiError:
    return ApiError(401, "invalid_credentials", _WRONG)


def _locked_out(seconds: float) -> ApiError:
    return ApiError(
        429,
        "locked_out",
        "too many wrong passwords: sign-in is locked for this user; try again after"
        " Retry-After seconds",
        headers=retry_after_header(seconds),
    )


async def _hashing(limits: SignInLimits, work: Callable[..., T], *args: Any) -> T:
    """``work(*args)`` in one of the process's password-hashing slots.

    Raises:
        ApiError: 503 ``sign_in_busy`` with ``Retry-After`` when every slot is taken and
            the queue is full.
    """
    try:
        return await limits.hashing.run(work, *args)
    except Busy:
        raise ApiError(
            503,
            "sign_in_busy",
            "too many sign-ins at once; try again after Retry-After seconds",
            headers=retry_after_header(1),
        ) from None


async def sign_in(
    pool: AsyncConnectionPool,
    tokens: TokenVerifier | None,
    email: str,
    password: str,
    *,
    limits: SignInLimits,
    address: str,
) -> SignedIn:
    """Check a user's email and password and issue their access token. ``address`` is the
    client's (its attempts are rate-limited); ``limits`` are the process's.

    Raises:
        ApiError: 503 ``sign_in_not_configured`` (no ``LQS_JWT_SECRET``); 429
            ``rate_limited`` (too many attempts from ``address``); 429 ``locked_out`` with
            ``Retry-After`` (too many for this email, whether or not it is a user's); 401
            ``invalid_credentials`` (unknown email or wrong password: one message); 403
            ``user_disabled``; 503 ``sign_in_busy`` (every hashing slot taken).
    """
    if tokens is None or not tokens.can_issue:
        raise ApiError(
            503,
            "sign_in_not_configured",
            "this server does not sign users in: set LQS_JWT_SECRET (32+ characters)",
        )
    wait = limits.per_address.acquire(address, limits.per_address_per_minute)
    if wait > 0:
        raise ApiError(
            429,
            "rate_limited",
            f"more than {limits.per_address_per_minute} sign-in attempts a minute from this"
            " address; try again after Retry-After seconds",
            headers=retry_after_header(wait),
        )
    email = email.strip()
    # Every email is counted alike, a user's or not, so a lockout tells nobody which
    # emails exist; the database's count below also holds across processes for users.
    email_key = email.lower()
    locked_for_here = limits.per_email.attempt(email_key)
    if locked_for_here > 0:
        raise _locked_out(locked_for_here)
    found = await run_transaction(
        pool, lambda conn: find_credentials(conn, email), retry_at_commit=True
    )
    if found is None:
        await _hashing(limits, verify_password, dummy_hash(), password)
        raise _wrong()
    user_id = found.user_id
    # Counted before the password is checked (and only if not locked), in one statement:
    # a burst of concurrent attempts gets at most MAX_FAILED_SIGN_INS password checks.
    # Not repeated when the COMMIT's answer is lost: one attempt, one count.
    locked_for = found.locked_for_seconds or await run_transaction(
        pool, lambda conn: count_sign_in_attempt(conn, user_id), retry_at_commit=False
    )
    if locked_for > 0:
        raise _locked_out(locked_for)
    if not await _hashing(limits, verify_password, found.password_hash, password):
        raise _wrong()
    limits.per_email.succeeded(email_key)
    if found.disabled:
        # The password was right: the attempt does not count towards a lockout.
        await run_transaction(
            pool, lambda conn: record_successful_sign_in(conn, user_id), retry_at_commit=True
        )
        raise ApiError(403, "user_disabled", "this user is disabled; ask an administrator")
    new_hash = (
        await _hashing(limits, hash_password, password)
        if needs_rehash(found.password_hash)
        else None
    )
    await run_transaction(
        pool, lambda conn: record_successful_sign_in(conn, user_id, new_hash), retry_at_commit=True
    )
    token, lifetime = tokens.issue(user_id, email=found.email)
    return SignedIn(
        token, lifetime, SignedInUser(user_id, found.email, found.client_id, found.role)
    )


def client_address(request: Request) -> str:
    """The address sign-in attempts are counted by: the connection's peer (the server's
    proxy settings decide whether a forwarded address replaces it)."""
    return request.client.host if request.client else ""


def _login_fields(payload: Any) -> tuple[str, str]:
    """The body's email and password.

    Raises:
        ApiError: 422, naming each missing or malformed field.
    """
    if not isinstance(payload, dict):
        raise ApiError(
            422,
            "invalid_login",
            'the body must be {"email": ..., "password": ...}',
            fields=[FieldError("body", "must be a JSON object")],
        )
    problems = []
    email, password = payload.get("email"), payload.get("password")
    if not isinstance(email, str) or not 0 < len(email.strip()) <= MAX_EMAIL_LENGTH:
        problems.append(FieldError("email", f"a string of 1 to {MAX_EMAIL_LENGTH} characters"))
    elif bad := unstorable_text(email):
        problems.append(FieldError("email", f"must not contain {bad}"))
    if not isinstance(password, str) or not 0 < len(password) <= MAX_LENGTH:
        problems.append(FieldError("password", f"a string of 1 to {MAX_LENGTH} characters"))
    elif bad := unstorable_text(password):
        problems.append(FieldError("password", f"must not contain {bad}"))
    if problems:
        raise ApiError(
            422, "invalid_login", "the body needs an email and a password", fields=problems
        )
    assert isinstance(email, str)
    assert isinstance(password, str)
    return email, password


_SIGNED_IN_EXAMPLE = {
    "access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...",
    "token_type": "bearer",
    "expires_in": 3600,
    "user": {
        "id": "6f1c1a52-1111-4c4b-9a55-6a1d2f0b7e01",
        "email": "ann@acme.example",
        "client_id": "0b7e6f1c-2222-4a52-8c4b-9a556a1d2f0b",
        "role": "admin",
    },
}


@router.post(
    "/auth/login",
    responses={
        200: {
            "description": "Signed in: a bearer token for the tenant API",
            "content": {"application/json": {"example": _SIGNED_IN_EXAMPLE}},
        },
        **error_responses(
            (
                (400, "Malformed JSON"),
                (401, "Unknown email or wrong password (one message for both)"),
                (403, "The user is disabled"),
                (422, "No email or password in the body, or one with NUL or a lone surrogate"),
                (
                    429,
                    "Locked out after 5 wrong passwords for this email (a user's or not), or"
                    " over 10 attempts a minute from this address; see Retry-After",
                ),
                (
                    503,
                    "Sign-in is not configured here (LQS_JWT_SECRET), or too many sign-ins"
                    " at once (see Retry-After)",
                ),
            )
        ),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["email", "password"],
                        "properties": {
                            "email": {"type": "string", "maxLength": MAX_EMAIL_LENGTH},
                            "password": {"type": "string", "maxLength": MAX_LENGTH},
                        },
                    },
                    "example": {"email": "ann@acme.example", "password": "correct horse 42"},
                }
            },
        },
        "security": [],
    },
)
async def login(
    request: Request, payload: JsonBody, pool: Pool, tokens: Tokens, limits: SignInGuard
) -> dict[str, Any]:
    """Sign in with an email and password; answers an access token for ``Authorization:
    Bearer``, valid for ``expires_in`` seconds."""
    email, password = _login_fields(payload)
    signed_in = await sign_in(
        pool, tokens, email, password, limits=limits, address=client_address(request)
    )
    return signed_in.as_json()


_ME_EXAMPLE = {
    "id": "6f1c1a52-1111-4c4b-9a55-6a1d2f0b7e01",
    "email": "ann@acme.example",
    "role": "admin",
    "client": {"id": "0b7e6f1c-2222-4a52-8c4b-9a556a1d2f0b", "name": "Acme", "slug": "acme"},
}


@router.get(
    "/v1/me",
    responses={
        200: {
            "description": "The signed-in user and their client",
            "content": {"application/json": {"example": _ME_EXAMPLE}},
        },
        **error_responses(
            (
                (401, "Missing, malformed, forged or expired token"),
                (404, "The token names no user with a profile"),
                (503, "Users' tokens cannot be verified here"),
            )
        ),
    },
    openapi_extra={"security": [{"userToken": []}]},
)
async def me(user: User, session: UserSession) -> dict[str, Any]:
    """The signed-in user and their client, as row-level security lets them read it."""
    profile = await own_profile(session)
    if profile is None:
        raise ApiError(
            404,
            "no_profile",
            "this token's user has no profile here: an administrator adds users with"
            " `lqs users add`",
        )
    return {
        "id": str(profile.id),
        "email": profile.email,
        "role": profile.role,
        "client": {
            "id": str(profile.client_id),
            "name": profile.client_name,
            "slug": profile.client_slug,
        },
    }
