"""Pages for signed-in users only (PageUser, PageSession), and signing out: the session
cookie verified as a bearer token is, anything else sent to the sign-in form."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from lqs.api.app import create_app
from lqs.api.browser_session import SESSION_COOKIE
from lqs.api.deps import WebhookConfig
from lqs.api.pages.signed_in import LOGIN_PATH, PageSession, PageUser
from lqs.api.tokens import TokenVerifier
from lqs.db.clients import create_client
from lqs.db.users import MAX_FAILED_SIGN_INS, add_user, set_disabled, set_password
from lqs.domain.passwords import MAX_LENGTH, hash_password
from tests.configs import api_config

SECRET = "a-fake-jwt-secret-for-page-tests-0123456789"
USER = uuid.UUID("00000000-0000-4000-8000-000000000001")


def app_with(database_url: str, tokens: TokenVerifier | None) -> FastAPI:
    # Many sign-ins from one test client: the per-address limit is test_auth_api's.
    app = create_app(
        database_url,
        api_config(tokens=tokens, pool_max_size=2, sign_in_attempts_per_minute=1000),
    )

    @app.get("/app/_whoami")
    async def whoami(user: PageUser) -> dict[str, str]:
        return {"user": str(user.user_id)}

    @app.get("/app/_database_sees")
    async def database_sees(conn: PageSession) -> dict[str, str]:
        cursor = await conn.execute("SELECT auth.uid()::text, current_setting('role')")
        uid, role = await cursor.fetchone() or ("", "")
        return {"uid": uid, "role": role}

    return app


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lqs.test") as http:
            yield http


@pytest.fixture(scope="module")
async def client(migrated_db: str) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(app_with(migrated_db, TokenVerifier(secret=SECRET))) as http:
        yield http


@pytest.fixture(autouse=True)
def no_cookies_kept(client: httpx.AsyncClient) -> None:
    client.cookies.clear()


def session(token: str) -> dict[str, str]:
    return {"cookie": f"{SESSION_COOKIE}={token}"}


def clears_the_session(response: httpx.Response) -> bool:
    return any(
        h.startswith(f"{SESSION_COOKIE}=") and "Max-Age=0" in h
        for h in response.headers.get_list("set-cookie")
    )


async def test_a_signed_in_browser_sees_the_page_as_its_user(client: httpx.AsyncClient) -> None:
    token, _ = TokenVerifier(secret=SECRET).issue(USER)

    response = await client.get("/app/_whoami", headers=session(token))

    assert response.status_code == 200
    assert response.json() == {"user": str(USER)}


async def test_without_a_session_a_page_redirects_to_sign_in(client: httpx.AsyncClient) -> None:
    response = await client.get("/app/_whoami")

    assert response.status_code == 303
    assert response.headers["location"] == LOGIN_PATH
    assert "set-cookie" not in response.headers


async def test_without_a_session_an_htmx_request_is_told_to_redirect(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/app/_whoami", headers={"HX-Request": "true"})

    assert response.status_code == 204
    assert response.headers["hx-redirect"] == LOGIN_PATH


async def test_an_expired_session_redirects_and_is_deleted(client: httpx.AsyncClient) -> None:
    expired, _ = TokenVerifier(secret=SECRET).issue(USER, now=time.time() - 7200)

    response = await client.get("/app/_whoami", headers=session(expired))

    assert response.status_code == 303
    assert clears_the_session(response)


async def test_a_forged_session_redirects_and_is_deleted(client: httpx.AsyncClient) -> None:
    forged, _ = TokenVerifier(secret="another-fake-secret-of-forty-characters!").issue(USER)

    response = await client.get("/app/_whoami", headers=session(forged))

    assert response.status_code == 303
    assert clears_the_session(response)


async def test_an_api_key_in_the_cookie_is_no_session(client: httpx.AsyncClient) -> None:
    response = await client.get("/app/_whoami", headers=session("lqs_not_a_jwt"))

    assert response.status_code == 303
    assert clears_the_session(response)


async def test_a_page_session_runs_as_the_signed_in_user(client: httpx.AsyncClient) -> None:
    token, _ = TokenVerifier(secret=SECRET).issue(USER)

    response = await client.get("/app/_database_sees", headers=session(token))

    assert response.json() == {"uid": str(USER), "role": "authenticated"}


async def test_with_no_way_to_verify_tokens_every_session_redirects(migrated_db: str) -> None:
    token, _ = TokenVerifier(secret=SECRET).issue(USER)
    async with serving(app_with(migrated_db, None)) as http:
        response = await http.get("/app/_whoami", headers=session(token))

    assert response.status_code == 303
    assert clears_the_session(response)


def page_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found
    return found.group(1)


async def test_signing_out_deletes_the_session_and_goes_to_sign_in(
    client: httpx.AsyncClient,
) -> None:
    token, _ = TokenVerifier(secret=SECRET).issue(USER)
    # The sign-in form, opened while signed in, carries a token bound to the session.
    csrf = page_token((await client.get(LOGIN_PATH, headers=session(token))).text)

    response = await client.post("/app/logout", data={"csrf_token": csrf}, headers=session(token))

    assert response.status_code == 303
    assert response.headers["location"] == LOGIN_PATH
    assert clears_the_session(response)


async def test_signing_out_without_a_token_of_this_session_is_refused(
    client: httpx.AsyncClient,
) -> None:
    token, _ = TokenVerifier(secret=SECRET).issue(USER)
    other = page_token((await client.get(LOGIN_PATH)).text)  # bound to a pre-session

    response = await client.post("/app/logout", data={"csrf_token": other}, headers=session(token))

    assert response.status_code == 403
    assert not clears_the_session(response)


PASSWORD = "a-long-enough-test-password"


async def _user_who_signs_in(url: str) -> str:
    """A new client with one user who signs in with :data:`PASSWORD`; their email."""
    slug = f"p-{uuid.uuid4().hex[:12]}"
    email = f"ann@{slug}.example"
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        client = await create_client(conn, slug.title(), slug, {})
        await add_user(conn, client.id, email, hash_password(PASSWORD), "member")
    return email


def _form_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the form has no CSRF token"
    return found.group(1)


async def _post_login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    token = _form_token((await client.get(LOGIN_PATH)).text)
    return await client.post(
        LOGIN_PATH, data={"email": email, "password": password, "csrf_token": token}
    )


async def test_the_form_signs_in_sets_the_session_and_goes_to_the_overview(
    client: httpx.AsyncClient, migrated_db: str
) -> None:
    email = await _user_who_signs_in(migrated_db)

    response = await _post_login(client, email, PASSWORD)

    assert response.status_code == 303
    assert response.headers["location"] == "/app/"
    cookie = next(
        h for h in response.headers.get_list("set-cookie") if h.startswith(f"{SESSION_COOKIE}=")
    )
    assert "HttpOnly" in cookie
    assert "samesite=lax" in cookie.lower()
    whoami = await client.get("/app/_database_sees")
    assert whoami.status_code == 200
    assert whoami.json()["role"] == "authenticated"


async def test_a_wrong_password_shows_the_form_again_with_401_and_no_session(
    client: httpx.AsyncClient, migrated_db: str
) -> None:
    email = await _user_who_signs_in(migrated_db)

    response = await _post_login(client, email, "not-the-password-at-all")

    assert response.status_code == 401
    assert "The email or password is wrong." in response.text
    assert "not-the-password-at-all" not in response.text
    assert SESSION_COOKIE not in response.cookies


async def test_the_form_locks_out_as_the_api_does(
    client: httpx.AsyncClient, migrated_db: str
) -> None:
    email = await _user_who_signs_in(migrated_db)
    for _ in range(MAX_FAILED_SIGN_INS):
        await _post_login(client, email, "not-the-password-at-all")

    response = await _post_login(client, email, PASSWORD)

    assert response.status_code == 429
    assert "locked" in response.text
    assert int(response.headers["retry-after"]) > 0


async def test_an_empty_or_oversize_password_is_422_without_a_check(
    client: httpx.AsyncClient, migrated_db: str
) -> None:
    email = await _user_who_signs_in(migrated_db)

    empty = await _post_login(client, email, "")
    oversize = await _post_login(client, email, "x" * (MAX_LENGTH + 1))

    assert empty.status_code == 422
    assert oversize.status_code == 422
    assert "Enter your email and password." in oversize.text


@pytest.mark.parametrize(
    ("email", "password"),
    [("ann\x00@acme.example", PASSWORD), ("ann@acme.example", "pass\x00word")],
    ids=["nul-in-email", "nul-in-password"],
)
async def test_a_nul_in_the_form_is_422_asking_for_email_and_password(
    client: httpx.AsyncClient, email: str, password: str
) -> None:
    response = await _post_login(client, email, password)

    assert response.status_code == 422
    assert "Enter your email and password." in response.text


async def test_a_url_encoded_nul_in_the_email_is_422(client: httpx.AsyncClient) -> None:
    token = _form_token((await client.get(LOGIN_PATH)).text)

    response = await client.post(
        LOGIN_PATH,
        content=f"email=a%00b&password=x&csrf_token={token}".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert response.status_code == 422
    assert "Enter your email and password." in response.text


async def _signed_in_cookie(client: httpx.AsyncClient, email: str) -> dict[str, str]:
    response = await _post_login(client, email, PASSWORD)
    assert response.status_code == 303, response.text
    token = response.cookies[SESSION_COOKIE]
    client.cookies.clear()
    return session(token)


async def test_disabling_a_user_ends_their_session_on_the_next_page(
    client: httpx.AsyncClient, migrated_db: str
) -> None:
    email = await _user_who_signs_in(migrated_db)
    cookie = await _signed_in_cookie(client, email)
    assert (await client.get("/app/", headers=cookie)).status_code == 200

    async with await psycopg.AsyncConnection.connect(migrated_db) as conn, conn.transaction():
        await set_disabled(conn, email, disabled=True)
    response = await client.get("/app/", headers=cookie)

    assert response.status_code == 303
    assert response.headers["location"] == LOGIN_PATH
    assert clears_the_session(response)


async def test_a_new_password_ends_sessions_from_before_it(
    client: httpx.AsyncClient, migrated_db: str
) -> None:
    email = await _user_who_signs_in(migrated_db)
    async with await psycopg.AsyncConnection.connect(migrated_db) as conn, conn.transaction():
        # The user was made an hour ago, so a token from a minute ago is current (a token's
        # iat is whole seconds: one issued in the second of a change is still accepted).
        cur = await conn.execute(
            "UPDATE public.user_credentials u SET password_changed_at = now() - interval '1 hour'"
            " FROM public.profiles p WHERE p.id = u.user_id AND p.email = %s RETURNING p.id",
            (email,),
        )
        row = await cur.fetchone()
    assert row is not None
    before, _ = TokenVerifier(secret=SECRET).issue(row[0], now=time.time() - 60)
    assert (await client.get("/app/_database_sees", headers=session(before))).status_code == 200

    async with await psycopg.AsyncConnection.connect(migrated_db) as conn, conn.transaction():
        await set_password(conn, email, hash_password(PASSWORD))
    refused = await client.get("/app/_database_sees", headers=session(before))
    after = await client.get("/app/_database_sees", headers=await _signed_in_cookie(client, email))

    assert refused.status_code == 303
    assert refused.headers["location"] == LOGIN_PATH
    assert after.status_code == 200


@pytest.mark.parametrize(
    ("public_base_url", "secure"), [("https://lqs.example", True), ("http://lqs.example", False)]
)
async def test_behind_a_tls_proxy_cookies_are_secure_when_the_public_address_is_https(
    migrated_db: str, public_base_url: str, secure: bool
) -> None:
    # The proxy ends TLS and the service runs without --proxy-headers: requests say http.
    config = api_config(
        tokens=TokenVerifier(secret=SECRET),
        pool_max_size=2,
        webhook=WebhookConfig(public_base_url=public_base_url),
    )
    async with serving(create_app(migrated_db, config)) as http:
        response = await http.get(LOGIN_PATH)

    assert response.status_code == 200
    [cookie] = [h for h in response.headers.get_list("set-cookie") if "presession" in h]
    assert ("; secure" in cookie.lower()) is secure
