"""Users' bearer tokens: what TokenVerifier accepts, and every way a token is refused.

HS256 tokens are signed with a generated secret; RS256 and ES256 tokens with keys
generated here, published as a JWKS by a small HTTP server on 127.0.0.1 that counts its
requests. The verifier's clock is a fake one the tests move: no sleeping.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from uuid import UUID, uuid4

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from lqs.api import tokens as tokens_module
from lqs.api.tokens import (
    JWKS_MIN_REFRESH_SECONDS,
    InvalidToken,
    TokenVerifier,
)

SECRET = secrets.token_urlsafe(32)
USER = UUID("00000000-0000-4000-8000-00000000000a")


class FakeClock:
    """Stands in for the ``time`` module inside :mod:`lqs.api.tokens`."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return time.time()

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(tokens_module, "time", fake)
    return fake


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    def public_jwk(self) -> dict[str, Any]:
        algorithm = RSAAlgorithm if self.alg == "RS256" else ECAlgorithm
        jwk: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def sign(self, claims: dict[str, Any], *, kid: str | None = None) -> str:
        return jwt.encode(
            claims, self.private, algorithm=self.alg, headers={"kid": kid or self.kid}
        )


def new_key(alg: str) -> SigningKey:
    private: Any = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if alg == "RS256"
        else ec.generate_private_key(ec.SECP256R1())
    )
    return SigningKey(f"{alg.lower()}-{uuid4().hex[:8]}", alg, private)


@dataclass
class JwksServer:
    """A key server: ``keys`` is what it publishes; ``requests`` how often it was asked."""

    keys: list[SigningKey] = field(default_factory=list)
    requests: int = 0
    failing: bool = False
    """Answer 503 instead of the keys."""
    url: str = ""


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    served = JwksServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.requests += 1
            if served.failing:
                self.send_error(503)
                return
            body = json.dumps({"keys": [k.public_jwk() for k in served.keys]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    served.url = f"http://127.0.0.1:{server.server_address[1]}/auth/v1/.well-known/jwks.json"
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def user_claims(**changes: Any) -> dict[str, Any]:
    """A signed-in user's claims as Supabase Auth writes them, with ``changes``."""
    now = int(time.time())
    claims = {
        "sub": str(USER),
        "role": "authenticated",
        "aud": "authenticated",
        "email": "ann@acme.example",
        "iat": now,
        "exp": now + 3600,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def hs256(claims: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


async def refusal(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(InvalidToken) as refused:
        await verifier.verify(token)
    return str(refused.value)


# ---------------------------------------------------------------- HS256


async def test_a_token_lqs_issued_verifies_as_its_user() -> None:
    verifier = TokenVerifier(secret=SECRET, ttl_seconds=900)
    token, lifetime = verifier.issue(USER, email="ann@acme.example")

    claims = await verifier.verify(token)

    assert lifetime == 900
    assert claims.role == "authenticated"
    assert claims.user_id == USER
    assert claims.email == "ann@acme.example"
    assert claims.claims["aud"] == "authenticated"
    assert claims.claims["exp"] - claims.claims["iat"] == 900


async def test_a_supabase_hs256_token_verifies() -> None:
    claims = await TokenVerifier(secret=SECRET).verify(hs256(user_claims()))
    assert (claims.role, claims.user_id) == ("authenticated", USER)


async def test_an_expired_token_is_refused() -> None:
    verifier = TokenVerifier(secret=SECRET, leeway_seconds=30)
    past = int(time.time()) - 120
    assert await refusal(verifier, hs256(user_claims(iat=past - 3600, exp=past))) == (
        "the token has expired"
    )


async def test_a_token_just_past_expiry_is_within_the_leeway() -> None:
    verifier = TokenVerifier(secret=SECRET, leeway_seconds=30)
    claims = await verifier.verify(hs256(user_claims(exp=int(time.time()) - 5)))
    assert claims.user_id == USER


async def test_a_token_for_another_audience_is_refused() -> None:
    message = await refusal(TokenVerifier(secret=SECRET), hs256(user_claims(aud="other-app")))
    assert message == "the token is for another audience ('other-app')"


async def test_a_user_token_without_an_audience_is_refused() -> None:
    message = await refusal(TokenVerifier(secret=SECRET), hs256(user_claims(aud=None)))
    assert message == "the token is for another audience (None)"


async def test_a_token_signed_with_another_secret_is_refused() -> None:
    forged = hs256(user_claims(), secret=secrets.token_urlsafe(32))
    assert await refusal(TokenVerifier(secret=SECRET), forged) == (
        "the token's signature does not verify"
    )


async def test_an_unsigned_token_alg_none_is_refused() -> None:
    unsigned = jwt.encode(user_claims(role="service_role"), key=None, algorithm="none")
    assert await refusal(TokenVerifier(secret=SECRET), unsigned) == (
        "tokens signed with 'none' are not accepted here"
    )


async def test_an_hs256_token_is_refused_when_only_a_jwks_is_configured(
    jwks: JwksServer,
) -> None:
    verifier = TokenVerifier(jwks_url=jwks.url)
    assert await refusal(verifier, hs256(user_claims())) == (
        "tokens signed with 'HS256' are not accepted here"
    )
    assert jwks.requests == 0  # refused before any key is fetched


async def test_an_algorithm_outside_the_list_is_refused() -> None:
    token = jwt.encode(user_claims(), SECRET + SECRET, algorithm="HS512")
    assert await refusal(TokenVerifier(secret=SECRET), token) == (
        "tokens signed with 'HS512' are not accepted here"
    )


@pytest.mark.parametrize("role", ["anon", "postgres", "supabase_admin", "dashboard_user"])
async def test_anon_and_every_other_role_are_refused(role: str) -> None:
    message = await refusal(TokenVerifier(secret=SECRET), hs256(user_claims(role=role)))
    assert message == f"tokens with role {role!r} are not accepted here"


async def test_a_token_without_a_role_is_refused() -> None:
    message = await refusal(TokenVerifier(secret=SECRET), hs256(user_claims(role=None)))
    assert message == "the token has no 'role' claim"


async def test_a_token_without_an_expiry_is_refused() -> None:
    message = await refusal(TokenVerifier(secret=SECRET), hs256(user_claims(exp=None)))
    assert message == "the token has no 'exp' claim"


async def test_a_service_role_token_without_an_audience_or_subject_is_accepted() -> None:
    now = int(time.time())
    token = hs256({"role": "service_role", "iss": "supabase", "iat": now, "exp": now + 60})

    claims = await TokenVerifier(secret=SECRET).verify(token)

    assert claims.role == "service_role"
    assert claims.user_id is None
    assert claims.email is None


async def test_a_service_role_token_for_another_audience_is_refused() -> None:
    token = hs256(user_claims(role="service_role", aud="other-app"))
    assert await refusal(TokenVerifier(secret=SECRET), token) == (
        "the token is for another audience ('other-app')"
    )


async def test_a_user_token_without_a_subject_is_refused() -> None:
    message = await refusal(TokenVerifier(secret=SECRET), hs256(user_claims(sub=None)))
    assert message == "the token has no subject (sub)"


async def test_a_subject_that_is_not_a_user_id_is_refused() -> None:
    message = await refusal(TokenVerifier(secret=SECRET), hs256(user_claims(sub="admin")))
    assert message == "the token's subject (sub) is not a user id"


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c", "lqs_abcdef"])
async def test_what_is_not_a_jwt_is_refused(token: str) -> None:
    assert await refusal(TokenVerifier(secret=SECRET), token) == "the token is not a JWT"


def test_a_verifier_needs_a_secret_or_a_key_set() -> None:
    with pytest.raises(ValueError, match="a JWT secret or a JWKS URL is needed"):
        TokenVerifier()


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="32\\+ characters"):
        TokenVerifier(secret="x" * 31)


def test_a_verifier_without_the_secret_issues_nothing(jwks: JwksServer) -> None:
    verifier = TokenVerifier(jwks_url=jwks.url)
    assert not verifier.can_issue
    with pytest.raises(RuntimeError, match="no JWT secret"):
        verifier.issue(USER)


# ---------------------------------------------------------------- JWKS (RS256, ES256)


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
async def test_a_token_signed_by_a_published_key_verifies(
    jwks: JwksServer, clock: FakeClock, alg: str
) -> None:
    key = new_key(alg)
    jwks.keys = [key]
    verifier = TokenVerifier(jwks_url=jwks.url)

    claims = await verifier.verify(key.sign(user_claims()))
    again = await verifier.verify(key.sign(user_claims(sub=str(uuid4()))))

    assert (claims.role, claims.user_id) == ("authenticated", USER)
    assert again.role == "authenticated"
    assert jwks.requests == 1  # the key set is cached


async def test_both_secret_and_key_set_verify_their_own_tokens(
    jwks: JwksServer, clock: FakeClock
) -> None:
    key = new_key("ES256")
    jwks.keys = [key]
    verifier = TokenVerifier(secret=SECRET, jwks_url=jwks.url)

    assert (await verifier.verify(hs256(user_claims()))).user_id == USER
    assert (await verifier.verify(key.sign(user_claims()))).user_id == USER


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
async def test_a_token_signed_by_an_unpublished_key_with_a_known_kid_is_refused(
    jwks: JwksServer, clock: FakeClock, alg: str
) -> None:
    published, impostor = new_key(alg), new_key(alg)
    jwks.keys = [published]
    forged = impostor.sign(user_claims(), kid=published.kid)

    assert await refusal(TokenVerifier(jwks_url=jwks.url), forged) == (
        "the token's signature does not verify"
    )


async def test_a_token_whose_algorithm_is_not_its_keys_is_refused(
    jwks: JwksServer, clock: FakeClock
) -> None:
    ec_key, rsa_key = new_key("ES256"), new_key("RS256")
    jwks.keys = [ec_key]
    # Signed with RSA, but naming the EC key's kid.
    token = rsa_key.sign(user_claims(), kid=ec_key.kid)

    message = await refusal(TokenVerifier(jwks_url=jwks.url), token)

    assert message.startswith("the token is invalid: ")
    assert "'RS256' does not match the key's algorithm 'ES256'" in message


async def test_an_unknown_kid_fetches_the_keys_again_after_a_rotation(
    jwks: JwksServer, clock: FakeClock
) -> None:
    old, new = new_key("RS256"), new_key("ES256")
    jwks.keys = [old]
    verifier = TokenVerifier(jwks_url=jwks.url)
    assert (await verifier.verify(old.sign(user_claims()))).user_id == USER

    jwks.keys = [new]  # the project rotated its signing key
    clock.advance(JWKS_MIN_REFRESH_SECONDS + 1)
    claims = await verifier.verify(new.sign(user_claims()))

    assert claims.user_id == USER
    assert jwks.requests == 2
    # The retired key is gone from the set: its tokens are refused from now on.
    clock.advance(JWKS_MIN_REFRESH_SECONDS + 1)
    assert await refusal(verifier, old.sign(user_claims())) == (
        "the token was signed by a key this service does not know"
    )


async def test_unknown_kids_within_the_refresh_interval_do_not_fetch_again(
    jwks: JwksServer, clock: FakeClock
) -> None:
    key = new_key("ES256")
    jwks.keys = [key]
    verifier = TokenVerifier(jwks_url=jwks.url)
    await verifier.verify(key.sign(user_claims()))
    assert jwks.requests == 1

    clock.advance(JWKS_MIN_REFRESH_SECONDS - 1)
    for _ in range(20):  # forged kids, as fast as an attacker likes
        message = await refusal(verifier, key.sign(user_claims(), kid=f"forged-{uuid4().hex}"))
        assert message == "the token was signed by a key this service does not know"

    assert jwks.requests == 1
    clock.advance(2)  # past the interval: one more fetch, then quiet again
    await refusal(verifier, key.sign(user_claims(), kid="forged-again"))
    await refusal(verifier, key.sign(user_claims(), kid="forged-once-more"))
    assert jwks.requests == 2


async def test_the_key_set_is_fetched_again_once_its_cache_expires(
    jwks: JwksServer, clock: FakeClock
) -> None:
    key = new_key("RS256")
    jwks.keys = [key]
    verifier = TokenVerifier(jwks_url=jwks.url)
    await verifier.verify(key.sign(user_claims()))

    clock.advance(tokens_module.JWKS_CACHE_SECONDS + 1)
    await verifier.verify(key.sign(user_claims()))

    assert jwks.requests == 2


async def test_an_unreachable_key_server_refuses_with_the_reason(clock: FakeClock) -> None:
    with socket_closed_port() as port:
        verifier = TokenVerifier(jwks_url=f"http://127.0.0.1:{port}/jwks.json")
        message = await refusal(verifier, new_key("ES256").sign(user_claims()))
    assert message == "the signing keys could not be fetched (ConnectError)"


async def test_keys_already_known_outlive_a_failed_refresh(
    jwks: JwksServer, clock: FakeClock
) -> None:
    key = new_key("ES256")
    jwks.keys = [key]
    verifier = TokenVerifier(jwks_url=jwks.url)
    await verifier.verify(key.sign(user_claims()))

    jwks.failing = True
    clock.advance(tokens_module.JWKS_CACHE_SECONDS + 1)  # stale: it asks, fails, keeps them
    claims = await verifier.verify(key.sign(user_claims()))

    assert claims.user_id == USER
    assert jwks.requests == 2


async def test_a_key_server_answering_an_error_refuses_with_the_reason(
    jwks: JwksServer, clock: FakeClock
) -> None:
    jwks.failing = True
    verifier = TokenVerifier(jwks_url=jwks.url)
    token = new_key("ES256").sign(user_claims())

    first = await refusal(verifier, token)
    clock.advance(1)  # within the refresh interval: not asked again, and the reason stays
    second = await refusal(verifier, token)

    assert first == second == "the signing keys could not be fetched (HTTPStatusError)"
    assert jwks.requests == 1


async def test_keys_arrive_once_the_key_server_is_back(jwks: JwksServer, clock: FakeClock) -> None:
    key = new_key("ES256")
    jwks.keys, jwks.failing = [key], True
    verifier = TokenVerifier(jwks_url=jwks.url)
    await refusal(verifier, key.sign(user_claims()))

    jwks.failing = False
    clock.advance(JWKS_MIN_REFRESH_SECONDS + 1)

    assert (await verifier.verify(key.sign(user_claims()))).user_id == USER


@contextmanager
def socket_closed_port() -> Iterator[int]:
    """A local port nothing listens on (bound, never listening), while the block runs."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield int(bound.getsockname()[1])
