"""``POST /auth/login`` and ``GET /v1/me`` in process, on a real database.

Users are made as ``lqs users add`` makes them (:func:`lqs.db.users.add_user` with an
argon2id hash); the secret is generated for the module.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
import jwt
import psycopg
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from openapi_spec_validator import validate
from psycopg_pool import AsyncConnectionPool

from lqs.api.app import create_app
from lqs.api.auth import sign_in
from lqs.api.errors import ApiError
from lqs.api.limits import SignInLimits
from lqs.api.tokens import TokenVerifier
from lqs.db.clients import create_api_key, create_client
from lqs.db.users import (
    LOCKOUT,
    MAX_FAILED_SIGN_INS,
    ProfileRole,
    add_user,
    set_disabled,
    set_password,
)
from lqs.domain.passwords import hash_password, verify_password
from tests.configs import api_config

pytestmark = pytest.mark.asyncio(loop_scope="module")

SECRET = secrets.token_urlsafe(32)
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
async def app(migrated_db: str) -> AsyncIterator[FastAPI]:
    # Many sign-ins from one test client: the per-address limit has its own test.
    application = create_app(
        migrated_db,
        api_config(
            pool_max_size=4, tokens=TokenVerifier(secret=SECRET), sign_in_attempts_per_minute=1000
        ),
    )
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="module")
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://lqs.test") as http:
        yield http


@dataclass(frozen=True)
class Member:
    id: UUID
    email: str
    client_id: UUID
    client_slug: str


async def _member(
    url: str, *, role: ProfileRole = "member", password_hash: str | None = None
) -> Member:
    """A new client with one user who signs in with :data:`PASSWORD`."""
    slug = f"c-{uuid.uuid4().hex[:12]}"
    email = f"ann.{slug}@Acme.example"
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        client = await create_client(conn, slug.title(), slug, {})
        account = await add_user(
            conn, client.id, email, password_hash or hash_password(PASSWORD), role
        )
    return Member(account.id, email, client.id, slug)


@pytest.fixture
async def member(migrated_db: str) -> Member:
    return await _member(migrated_db)


def _limits(**options: Any) -> SignInLimits:
    return SignInLimits.create(MAX_FAILED_SIGN_INS, LOCKOUT.total_seconds(), **options)


@pytest.fixture
def fresh_limits(app: FastAPI) -> Iterator[Callable[..., SignInLimits]]:
    """Installs new sign-in limits in the app (see :meth:`SignInLimits.create`) for one test."""
    kept = app.state.sign_in_limits

    def install(**options: Any) -> SignInLimits:
        app.state.sign_in_limits = _limits(**options)
        return app.state.sign_in_limits

    yield install
    app.state.sign_in_limits = kept


async def _login(api: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await api.post("/auth/login", json={"email": email, "password": password})


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _stored(url: str, user_id: UUID) -> dict[str, Any]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = conn.cursor(row_factory=psycopg.rows.dict_row)
        await cur.execute("SELECT * FROM public.user_credentials WHERE user_id = %s", (user_id,))
        row = await cur.fetchone()
    assert row is not None
    return row


# ---------------------------------------------------------------- login


async def test_login_answers_a_token_that_works_on_v1_me(
    api: httpx.AsyncClient, member: Member
) -> None:
    response = await _login(api, member.email, PASSWORD)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert body["user"] == {
        "id": str(member.id),
        "email": member.email,
        "client_id": str(member.client_id),
        "role": "member",
    }
    claims = jwt.decode(
        body["access_token"], SECRET, algorithms=["HS256"], audience="authenticated"
    )
    assert claims["sub"] == str(member.id)
    assert claims["role"] == "authenticated"
    assert claims["exp"] - claims["iat"] == 3600

    me = await api.get("/v1/me", headers=_bearer(body["access_token"]))

    assert me.status_code == 200, me.text
    assert me.json() == {
        "id": str(member.id),
        "email": member.email,
        "role": "member",
        "client": {"id": str(member.client_id), "name": member.client_slug.title(),
                   "slug": member.client_slug},
    }  # fmt: skip


async def test_the_email_matches_whatever_its_case_and_surrounding_spaces(
    api: httpx.AsyncClient, member: Member
) -> None:
    response = await _login(api, f"  {member.email.upper()} ", PASSWORD)
    assert response.status_code == 200, response.text
    assert response.json()["user"]["id"] == str(member.id)


async def test_a_wrong_password_and_an_unknown_email_get_the_same_401(
    api: httpx.AsyncClient, member: Member
) -> None:
    wrong = await _login(api, member.email, PASSWORD + "!")
    unknown = await _login(api, f"nobody-{uuid.uuid4().hex}@acme.example", PASSWORD)

    assert wrong.status_code == unknown.status_code == 401
    assert (
        wrong.json()
        == unknown.json()
        == {"error": {"code": "invalid_credentials", "message": "the email or password is wrong"}}
    )


async def test_an_unknown_email_takes_about_as_long_as_a_wrong_password(
    api: httpx.AsyncClient, member: Member
) -> None:
    await _login(api, "warm-up@acme.example", PASSWORD)  # the dummy hash is made once

    def timed(email: str) -> Any:
        async def run() -> float:
            started = time.perf_counter()
            await _login(api, email, PASSWORD + "?")
            return time.perf_counter() - started

        return run()

    wrong = min([await timed(member.email) for _ in range(2)])
    unknown = min([await timed(f"nobody-{uuid.uuid4().hex}@acme.example") for _ in range(2)])

    # Both are an argon2id verification (a fifth of a second); without the dummy hash an
    # unknown email would answer in a few milliseconds.
    assert unknown > wrong / 3


async def test_five_wrong_passwords_lock_the_user_out_with_retry_after(
    api: httpx.AsyncClient, member: Member, migrated_db: str
) -> None:
    for _ in range(MAX_FAILED_SIGN_INS):
        assert (await _login(api, member.email, "wrong password!")).status_code == 401

    locked = await _login(api, member.email, PASSWORD)  # even the right password

    assert locked.status_code == 429
    assert locked.json()["error"]["code"] == "locked_out"
    retry_after = int(locked.headers["Retry-After"])
    assert LOCKOUT.total_seconds() - 60 < retry_after <= LOCKOUT.total_seconds()
    stored = await _stored(migrated_db, member.id)
    assert stored["locked_until"] is not None
    assert stored["failed_attempts"] == 0  # the next lockout needs five more


async def test_a_burst_of_concurrent_wrong_passwords_gets_at_most_five_password_checks(
    api: httpx.AsyncClient, member: Member, migrated_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[str] = []

    def counting_verify(password_hash: str, password: str) -> bool:
        checked.append(password)
        return verify_password(password_hash, password)

    monkeypatch.setattr("lqs.api.auth.verify_password", counting_verify)

    burst = await asyncio.gather(
        *(_login(api, member.email, f"wrong password {n}!") for n in range(20))
    )

    statuses = sorted(response.status_code for response in burst)
    assert len(checked) <= MAX_FAILED_SIGN_INS
    assert statuses == [401] * len(checked) + [429] * (20 - len(checked))
    assert (await _stored(migrated_db, member.id))["locked_until"] is not None
    after = await _login(api, member.email, PASSWORD)
    assert after.status_code == 429
    assert len(checked) <= MAX_FAILED_SIGN_INS  # the right password was not checked either


async def test_a_locked_user_is_answered_429_without_a_password_check(
    api: httpx.AsyncClient, member: Member, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(MAX_FAILED_SIGN_INS):
        await _login(api, member.email, "wrong password!")

    def refuse(password_hash: str, password: str) -> bool:
        raise AssertionError("a locked user's password was checked")

    monkeypatch.setattr("lqs.api.auth.verify_password", refuse)

    assert (await _login(api, member.email, PASSWORD)).status_code == 429


async def test_a_disabled_user_s_right_password_does_not_count_towards_a_lockout(
    api: httpx.AsyncClient, member: Member, migrated_db: str
) -> None:
    async with await psycopg.AsyncConnection.connect(migrated_db) as conn, conn.transaction():
        await set_disabled(conn, member.email, disabled=True)
    for _ in range(MAX_FAILED_SIGN_INS - 1):
        await _login(api, member.email, "wrong password!")

    assert (await _login(api, member.email, PASSWORD)).status_code == 403
    stored = await _stored(migrated_db, member.id)
    assert (stored["failed_attempts"], stored["locked_until"]) == (0, None)


async def test_the_lockout_ends_and_the_right_password_clears_it(
    api: httpx.AsyncClient,
    member: Member,
    migrated_db: str,
    fresh_limits: Callable[..., SignInLimits],
) -> None:
    for _ in range(MAX_FAILED_SIGN_INS):
        await _login(api, member.email, "wrong password!")
    # The lockout runs out: in the process (as if it had restarted) and in the database.
    fresh_limits()
    async with await psycopg.AsyncConnection.connect(migrated_db) as conn:
        await conn.execute(
            "UPDATE public.user_credentials SET locked_until = now() - interval '1 second'"
            " WHERE user_id = %s",
            (member.id,),
        )
        await conn.commit()

    response = await _login(api, member.email, PASSWORD)

    assert response.status_code == 200, response.text
    stored = await _stored(migrated_db, member.id)
    assert (stored["failed_attempts"], stored["locked_until"]) == (0, None)


async def test_a_success_starts_the_count_of_wrong_passwords_again(
    api: httpx.AsyncClient, member: Member
) -> None:
    for _ in range(MAX_FAILED_SIGN_INS - 1):
        await _login(api, member.email, "wrong password!")
    assert (await _login(api, member.email, PASSWORD)).status_code == 200
    for _ in range(MAX_FAILED_SIGN_INS - 1):
        assert (await _login(api, member.email, "wrong password!")).status_code == 401

    assert (await _login(api, member.email, PASSWORD)).status_code == 200


async def test_a_disabled_user_gets_403_and_only_with_the_right_password(
    api: httpx.AsyncClient, member: Member, migrated_db: str
) -> None:
    async with await psycopg.AsyncConnection.connect(migrated_db) as conn, conn.transaction():
        await set_disabled(conn, member.email, disabled=True)

    right = await _login(api, member.email, PASSWORD)
    wrong = await _login(api, member.email, "wrong password!")

    assert right.status_code == 403
    assert right.json()["error"]["code"] == "user_disabled"
    assert wrong.status_code == 401  # says nothing to someone without the password


async def test_a_hash_made_with_weaker_parameters_is_replaced_at_sign_in(
    api: httpx.AsyncClient, migrated_db: str
) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    member = await _member(migrated_db, password_hash=weak)

    assert (await _login(api, member.email, PASSWORD)).status_code == 200

    stored = (await _stored(migrated_db, member.id))["password_hash"]
    assert stored != weak
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert verify_password(stored, PASSWORD)


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"email": "ann@acme.example"}, ["password"]),
        ({"password": PASSWORD}, ["email"]),
        ({"email": 7, "password": ["x"]}, ["email", "password"]),
        ({"email": "   ", "password": ""}, ["email", "password"]),
        (["ann@acme.example", PASSWORD], ["body"]),
    ],
)
async def test_a_body_without_an_email_and_a_password_is_422_naming_them(
    api: httpx.AsyncClient, body: Any, fields: list[str]
) -> None:
    response = await api.post("/auth/login", json=body)

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_login"
    assert [f["field"] for f in error["fields"]] == fields


async def test_a_body_that_is_not_json_is_400(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/auth/login", content=b"email=a&password=b", headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


@pytest.mark.parametrize(
    "verifier",
    [None, TokenVerifier(jwks_url="http://127.0.0.1:9/jwks.json")],
    ids=["nothing-configured", "jwks-only"],
)
async def test_without_a_jwt_secret_sign_in_is_503(
    pool: AsyncConnectionPool, verifier: TokenVerifier | None
) -> None:
    with pytest.raises(ApiError) as refused:
        await sign_in(pool, verifier, "ann@acme.example", PASSWORD, limits=_limits(), address="::1")

    assert refused.value.status == 503
    assert refused.value.code == "sign_in_not_configured"
    assert "LQS_JWT_SECRET" in refused.value.message


async def test_sign_in_is_a_function_the_dashboard_can_call(
    pool: AsyncConnectionPool, member: Member
) -> None:
    signed_in = await sign_in(
        pool, TokenVerifier(secret=SECRET), member.email, PASSWORD, limits=_limits(), address="::1"
    )

    assert signed_in.user.id == member.id
    assert signed_in.as_json()["token_type"] == "bearer"


# ---------------------------------------------------------------- attempt limits


def _nobody() -> str:
    return f"nobody-{uuid.uuid4().hex}@acme.example"


async def test_attempts_from_one_address_past_the_limit_are_429_with_retry_after(
    api: httpx.AsyncClient, fresh_limits: Callable[..., SignInLimits]
) -> None:
    fresh_limits(per_address_per_minute=3)
    for _ in range(3):
        assert (await _login(api, _nobody(), PASSWORD)).status_code == 401

    refused = await _login(api, _nobody(), PASSWORD)

    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 0 < int(refused.headers["Retry-After"]) <= 20


async def test_an_unknown_email_is_locked_out_exactly_as_a_user_s(
    api: httpx.AsyncClient, member: Member, monkeypatch: pytest.MonkeyPatch
) -> None:
    unknown = _nobody()
    for _ in range(MAX_FAILED_SIGN_INS):
        assert (await _login(api, member.email, "wrong password!")).status_code == 401
        assert (await _login(api, unknown, "wrong password!")).status_code == 401

    def refuse(password_hash: str, password: str) -> bool:
        raise AssertionError("a locked-out email's password was checked")

    monkeypatch.setattr("lqs.api.auth.verify_password", refuse)
    user_s = await _login(api, member.email, PASSWORD)
    nobody_s = await _login(api, unknown, PASSWORD)

    assert user_s.status_code == nobody_s.status_code == 429
    assert user_s.json() == nobody_s.json()
    assert user_s.json()["error"]["code"] == "locked_out"
    for response in (user_s, nobody_s):
        assert LOCKOUT.total_seconds() - 60 < int(response.headers["Retry-After"])
        assert int(response.headers["Retry-After"]) <= LOCKOUT.total_seconds()


async def test_an_unknown_email_in_any_case_counts_as_one(
    api: httpx.AsyncClient,
) -> None:
    unknown = _nobody()
    for n in range(MAX_FAILED_SIGN_INS):
        spelled = unknown.upper() if n % 2 else f" {unknown} "
        assert (await _login(api, spelled, "wrong password!")).status_code == 401

    assert (await _login(api, unknown, PASSWORD)).status_code == 429


async def test_when_every_hashing_slot_is_taken_sign_in_is_503_with_retry_after(
    api: httpx.AsyncClient,
    fresh_limits: Callable[..., SignInLimits],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fresh_limits(slots=2, queue=0)
    started = threading.Semaphore(0)
    release = threading.Event()
    running = 0
    most = 0
    counted = threading.Lock()

    def blocking_verify(password_hash: str, password: str) -> bool:
        nonlocal running, most
        with counted:
            running += 1
            most = max(most, running)
        started.release()
        release.wait(timeout=30)
        with counted:
            running -= 1
        return False

    monkeypatch.setattr("lqs.api.auth.verify_password", blocking_verify)
    hashing = [asyncio.create_task(_login(api, _nobody(), PASSWORD)) for _ in range(2)]
    for _ in hashing:
        assert await asyncio.to_thread(started.acquire, timeout=30)

    refused = await _login(api, _nobody(), PASSWORD)
    release.set()
    answered = await asyncio.gather(*hashing)

    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "sign_in_busy"
    assert refused.headers["Retry-After"] == "1"
    assert [response.status_code for response in answered] == [401, 401]
    assert most == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"email": "a\\u0000b", "password": "x"}', "email"),
        (b'{"email": "ann@acme.example", "password": "x\\u0000"}', "password"),
        (b'{"email": "\\ud800@acme.example", "password": "x"}', "email"),
        (b'{"email": "ann@acme.example", "password": "\\udfff"}', "password"),
    ],
    ids=["nul-email", "nul-password", "surrogate-email", "surrogate-password"],
)
async def test_an_email_or_password_postgresql_cannot_take_is_422_naming_it(
    api: httpx.AsyncClient, body: bytes, field: str
) -> None:
    response = await api.post(
        "/auth/login", content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_login"
    assert [f["field"] for f in error["fields"]] == [field]


# ---------------------------------------------------------------- sessions that end


async def _backdated(url: str, member: Member) -> str:
    """A token for ``member`` issued a minute ago, their password set an hour ago."""
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        await conn.execute(
            "UPDATE public.user_credentials SET password_changed_at = now() - interval '1 hour'"
            " WHERE user_id = %s",
            (member.id,),
        )
    return TokenVerifier(secret=SECRET).issue(member.id, now=time.time() - 60)[0]


async def test_disabling_a_user_ends_their_existing_token(
    api: httpx.AsyncClient, member: Member, migrated_db: str
) -> None:
    token = (await _login(api, member.email, PASSWORD)).json()["access_token"]
    assert (await api.get("/v1/me", headers=_bearer(token))).status_code == 200

    async with await psycopg.AsyncConnection.connect(migrated_db) as conn, conn.transaction():
        await set_disabled(conn, member.email, disabled=True)
    response = await api.get("/v1/me", headers=_bearer(token))

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "session_ended"
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_a_new_password_ends_older_tokens_and_a_new_sign_in_works(
    api: httpx.AsyncClient, member: Member, migrated_db: str
) -> None:
    old = await _backdated(migrated_db, member)
    assert (await api.get("/v1/me", headers=_bearer(old))).status_code == 200

    async with await psycopg.AsyncConnection.connect(migrated_db) as conn, conn.transaction():
        await set_password(conn, member.email, hash_password(PASSWORD + " new"))
    refused = await api.get("/v1/me", headers=_bearer(old))
    signed_in = await _login(api, member.email, PASSWORD + " new")

    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "session_ended"
    assert signed_in.status_code == 200
    new = signed_in.json()["access_token"]
    assert (await api.get("/v1/me", headers=_bearer(new))).status_code == 200


async def test_an_ended_session_is_refused_before_a_csv_export_starts(
    api: httpx.AsyncClient, member: Member, migrated_db: str
) -> None:
    token = await _backdated(migrated_db, member)
    assert (await api.get("/v1/leads.csv", headers=_bearer(token))).status_code == 200

    async with await psycopg.AsyncConnection.connect(migrated_db) as conn, conn.transaction():
        await set_disabled(conn, member.email, disabled=True)

    for path in ("/v1/leads.csv", "/v1/communications.csv"):
        response = await api.get(path, headers=_bearer(token))
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "session_ended"


async def test_a_token_without_iat_is_refused_for_a_user_with_credentials(
    api: httpx.AsyncClient, member: Member
) -> None:
    now = int(time.time())
    claims = {"sub": str(member.id), "role": "authenticated", "aud": "authenticated"}
    token = jwt.encode({**claims, "exp": now + 60}, SECRET, "HS256")

    response = await api.get("/v1/me", headers=_bearer(token))

    assert response.status_code == 401


async def test_a_user_without_credentials_keeps_their_session(
    api: httpx.AsyncClient, migrated_db: str
) -> None:
    """A Supabase Auth user: no user_credentials row, so their token stays current."""
    slug = f"c-{uuid.uuid4().hex[:12]}"
    user_id = uuid.uuid4()
    async with await psycopg.AsyncConnection.connect(migrated_db) as conn, conn.transaction():
        client = await create_client(conn, slug.title(), slug, {})
        await conn.execute(
            "INSERT INTO public.profiles (id, client_id, email, role) VALUES (%s, %s, %s, 'member')",
            (user_id, client.id, f"sb@{slug}.example"),
        )
    token, _ = TokenVerifier(secret=SECRET).issue(user_id, now=time.time() - 3000)

    assert (await api.get("/v1/me", headers=_bearer(token))).status_code == 200


# ---------------------------------------------------------------- /v1/me


async def test_a_token_for_user_a_shows_only_a_s_client(
    api: httpx.AsyncClient, migrated_db: str
) -> None:
    a, b = await _member(migrated_db, role="admin"), await _member(migrated_db)
    verifier = TokenVerifier(secret=SECRET)

    seen_by_a = (await api.get("/v1/me", headers=_bearer(verifier.issue(a.id)[0]))).json()
    seen_by_b = (await api.get("/v1/me", headers=_bearer(verifier.issue(b.id)[0]))).json()

    assert (seen_by_a["id"], seen_by_a["role"]) == (str(a.id), "admin")
    assert seen_by_a["client"]["id"] == str(a.client_id)
    assert seen_by_b["client"]["id"] == str(b.client_id)
    assert str(b.client_id) not in str(seen_by_a)


async def test_a_token_for_a_user_without_a_profile_is_404(api: httpx.AsyncClient) -> None:
    token, _ = TokenVerifier(secret=SECRET).issue(uuid.uuid4())

    response = await api.get("/v1/me", headers=_bearer(token))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "no_profile"


async def test_a_service_role_token_without_a_subject_is_404_on_v1_me(
    api: httpx.AsyncClient,
) -> None:
    now = int(time.time())
    token = jwt.encode({"role": "service_role", "iat": now, "exp": now + 60}, SECRET, "HS256")

    response = await api.get("/v1/me", headers=_bearer(token))

    assert response.status_code == 404


def _forged(member: Member) -> str:
    return TokenVerifier(secret=secrets.token_urlsafe(32)).issue(member.id)[0]


def _expired(member: Member) -> str:
    return TokenVerifier(secret=SECRET).issue(member.id, now=time.time() - 7200)[0]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_forged, "the token's signature does not verify"),
        (_expired, "the token has expired"),
    ],
    ids=["forged", "expired"],
)
async def test_a_forged_or_expired_token_is_401(
    api: httpx.AsyncClient, member: Member, make: Any, message: str
) -> None:
    response = await api.get("/v1/me", headers=_bearer(make(member)))

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "invalid_token"
    assert response.json()["error"]["message"] == message


async def test_v1_me_without_a_token_is_401(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_token"


async def test_an_api_key_is_not_a_users_token(
    api: httpx.AsyncClient, member: Member, migrated_db: str
) -> None:
    async with await psycopg.AsyncConnection.connect(migrated_db) as conn, conn.transaction():
        _, key = await create_api_key(conn, member.client_id, "intake", 60)

    response = await api.get("/v1/me", headers=_bearer(key))

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_not_accepted"


# ---------------------------------------------------------------- OpenAPI


async def test_openapi_documents_login_and_me_with_the_user_token_scheme(
    api: httpx.AsyncClient,
) -> None:
    spec = (await api.get("/openapi.json")).json()
    validate(spec)

    schemes = spec["components"]["securitySchemes"]
    assert set(schemes) == {"apiKey", "userToken"}
    assert schemes["userToken"]["bearerFormat"] == "JWT"
    login = spec["paths"]["/auth/login"]["post"]
    assert login["security"] == []
    body = login["requestBody"]["content"]["application/json"]
    assert body["schema"]["required"] == ["email", "password"]
    assert set(body["example"]) == {"email", "password"}
    assert {"200", "401", "403", "429", "503"} <= set(login["responses"])
    assert "access_token" in login["responses"]["200"]["content"]["application/json"]["example"]
    me = spec["paths"]["/v1/me"]["get"]
    assert me["security"] == [{"userToken": []}]
    assert me["responses"]["200"]["content"]["application/json"]["example"]["client"]["slug"]
