"""Supabase-compatible access tokens: verify a bearer JWT, and issue one after sign-in.

A token is accepted when it is a JWT with Supabase Auth's claims (``sub``, ``role``,
``exp``, and ``aud: authenticated`` for a user) signed either

- with HS256 and ``LQS_JWT_SECRET`` (Supabase's legacy JWT secret; LQS's own sign-in
  issues these), or
- with RS256 or ES256 by a key in the JWKS at ``LQS_JWKS_URL`` (Supabase's signing
  keys, ``https://<project>.supabase.co/auth/v1/.well-known/jwks.json``). The key set is
  cached for :data:`JWKS_CACHE_SECONDS` and fetched again for an unknown ``kid``, at most
  once every :data:`JWKS_MIN_REFRESH_SECONDS`, so forged ``kid`` values cannot make the
  API hammer the key server.

Only ``authenticated`` and ``service_role`` tokens are accepted: ``anon`` (Supabase's
public key) and any other role are refused, as is ``alg: none`` and any algorithm not
listed above. Every refusal is an :class:`InvalidToken` whose message says why.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

import httpx
import jwt

from lqs.errors import InputError

AUDIENCE = "authenticated"
"""The ``aud`` Supabase Auth puts in a signed-in user's token."""
MIN_SECRET_LENGTH = 32
JWKS_CACHE_SECONDS = 600.0
JWKS_MIN_REFRESH_SECONDS = 30.0
_ASYMMETRIC = ("RS256", "ES256")
TokenRole = Literal["authenticated", "service_role"]


class InvalidToken(InputError, ValueError):
    """Raised when a bearer token is malformed, forged, expired, for another audience,
    or carries a role LQS does not accept; the message says which."""


@dataclass(frozen=True)
class Claims:
    """Who a verified token speaks for."""

    role: TokenRole
    user_id: UUID | None
    """``sub``; a ``service_role`` token may have none."""
    email: str | None
    claims: Mapping[str, Any]
    """Every claim, as PostgREST would set ``request.jwt.claims``."""


class _KeySet:
    """The JWKS at one URL: cached, fetched again on an unknown ``kid`` (rate-limited)."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self._url = url
        self._timeout = timeout
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._unavailable: str | None = None
        """Why no key is known, while the key server has not answered yet."""
        self._lock = asyncio.Lock()

    async def key(self, kid: str | None) -> jwt.PyJWK:
        now = time.monotonic()
        stale = now - self._fetched_at > JWKS_CACHE_SECONDS
        unknown = kid not in self._keys if kid is not None else not self._keys
        if stale or (unknown and now - self._fetched_at > JWKS_MIN_REFRESH_SECONDS):
            await self._refresh()
        if not self._keys and self._unavailable is not None:
            # Until the interval allows the next attempt, say why, not "unknown key".
            raise InvalidToken(self._unavailable)
        if kid is None:
            if len(self._keys) == 1:
                return next(iter(self._keys.values()))
            raise InvalidToken("the token names no key (kid) and the key set has several")
        found = self._keys.get(kid)
        if found is None:
            raise InvalidToken("the token was signed by a key this service does not know")
        return found

    async def _refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._fetched_at <= JWKS_MIN_REFRESH_SECONDS:
                return  # another request refreshed it while this one waited
            try:
                async with httpx.AsyncClient(timeout=self._timeout) as client:
                    response = await client.get(self._url)
                    response.raise_for_status()
                    keys = jwt.PyJWKSet.from_dict(response.json()).keys
            except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
                if not self._keys:
                    self._unavailable = (
                        f"the signing keys could not be fetched ({type(exc).__name__})"
                    )
                    raise InvalidToken(self._unavailable) from None
                return  # keep the keys already known; try again after the interval
            finally:
                self._fetched_at = time.monotonic()
            self._keys = {k.key_id: k for k in keys if k.key_id is not None}
            self._unavailable = None
            if len(keys) == 1 and keys[0].key_id is None:
                self._keys = {"": keys[0]}


class TokenVerifier:
    """Verifies bearer tokens; issues HS256 tokens when it has the secret.

    Raises:
        ValueError: neither a secret nor a JWKS URL, or a secret shorter than
            :data:`MIN_SECRET_LENGTH`.
    """

    def __init__(
        self,
        *,
        secret: str | None = None,
        jwks_url: str | None = None,
        ttl_seconds: int = 3600,
        leeway_seconds: int = 30,
    ) -> None:
        if secret is None and jwks_url is None:
            raise ValueError("a JWT secret or a JWKS URL is needed to verify tokens")
        if secret is not None and len(secret) < MIN_SECRET_LENGTH:
            raise ValueError(f"the JWT secret needs {MIN_SECRET_LENGTH}+ characters")
        self._secret = secret
        self._jwks = _KeySet(jwks_url) if jwks_url else None
        self.ttl_seconds = ttl_seconds
        self._leeway = leeway_seconds

    @property
    def can_issue(self) -> bool:
        """Whether this verifier signs tokens (it has the HS256 secret)."""
        return self._secret is not None

    def issue(
        self, user_id: UUID, *, email: str | None = None, now: float | None = None
    ) -> tuple[str, int]:
        """A signed-in user's token, as Supabase Auth would make it, and its lifetime.

        Raises:
            RuntimeError: this verifier has no secret to sign with.
        """
        if self._secret is None:
            raise RuntimeError("no JWT secret to sign tokens with")
        issued = int(now if now is not None else time.time())
        claims: dict[str, Any] = {
            "sub": str(user_id),
            "role": "authenticated",
            "aud": AUDIENCE,
            "iat": issued,
            "exp": issued + self.ttl_seconds,
            "iss": "lqs",
        }
        if email:
            claims["email"] = email
        return jwt.encode(claims, self._secret, algorithm="HS256"), self.ttl_seconds

    async def verify(self, token: str) -> Claims:
        """The claims of a valid token.

        Raises:
            InvalidToken: the token is refused; the message says why.
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("the token is not a JWT") from None
        alg = header.get("alg")
        key: Any
        if alg == "HS256" and self._secret is not None:
            key = self._secret
        elif alg in _ASYMMETRIC and self._jwks is not None:
            kid = header.get("kid")
            key = await self._jwks.key(kid if isinstance(kid, str) else None)
        else:
            raise InvalidToken(f"tokens signed with {alg!r} are not accepted here")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                leeway=self._leeway,
                options={"require": ["exp", "role"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the token has expired") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("the token's signature does not verify") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"the token has no {exc.claim!r} claim") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"the token is invalid: {exc}") from None
        return _claims(claims)


def _claims(claims: dict[str, Any]) -> Claims:
    role = claims.get("role")
    if role not in ("authenticated", "service_role"):
        raise InvalidToken(f"tokens with role {role!r} are not accepted here")
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    # Supabase's service_role key carries no audience; a user's token must carry theirs.
    if role == "authenticated" and AUDIENCE not in audiences:
        raise InvalidToken(f"the token is for another audience ({aud!r})")
    if role == "service_role" and aud is not None and AUDIENCE not in audiences:
        raise InvalidToken(f"the token is for another audience ({aud!r})")
    sub = claims.get("sub")
    user_id: UUID | None = None
    if sub is not None:
        try:
            user_id = UUID(str(sub))
        except ValueError:
            raise InvalidToken("the token's subject (sub) is not a user id") from None
    if role == "authenticated" and user_id is None:
        raise InvalidToken("the token has no subject (sub)")
    email = claims.get("email")
    return Claims(
        role=role,
        user_id=user_id,
        email=email if isinstance(email, str) else None,
        claims=claims,
    )
