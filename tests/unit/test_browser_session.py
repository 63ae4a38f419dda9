"""The dashboard's session cookie and CSRF tokens (lqs.api.browser_session)."""

from __future__ import annotations

import secrets
from http.cookies import SimpleCookie

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from lqs.api.browser_session import (
    COOKIE_PATH,
    CSRF_HEADER,
    PRESESSION_COOKIE,
    PRESESSION_MAX_AGE,
    SECURE_COOKIES_STATE,
    SESSION_COOKIE,
    CsrfTokens,
    clear_session_cookie,
    csrf_binding,
    derive_csrf_key,
    is_https,
    presession_binding,
    secure_cookies_from,
    session_token,
    set_presession_cookie,
    set_session_cookie,
)

KEY = secrets.token_bytes(32)


def request(
    *,
    scheme: str = "http",
    cookies: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    secure_cookies: bool | None = None,
) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if cookies:
        raw.append((b"cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()).encode()))
    scope: dict[str, object] = {}
    if secure_cookies is not None:  # the app's flag, as pages.install sets it
        app = Starlette()
        setattr(app.state, SECURE_COOKIES_STATE, secure_cookies)
        scope["app"] = app
    return Request(
        {
            **scope,
            "type": "http",
            "method": "GET",
            "scheme": scheme,
            "server": ("lqs.example", 443 if scheme == "https" else 80),
            "path": "/app/login",
            "query_string": b"",
            "headers": raw,
        }
    )


def set_cookies(response: Response) -> dict[str, SimpleCookie]:
    """The response's Set-Cookie headers, by cookie name."""
    parsed: dict[str, SimpleCookie] = {}
    for name, value in response.raw_headers:
        if name == b"set-cookie":
            cookie: SimpleCookie = SimpleCookie()
            cookie.load(value.decode())
            parsed.update(dict.fromkeys(cookie, cookie))
    return parsed


def attributes(response: Response, name: str) -> str:
    return next(
        v.decode()
        for k, v in response.raw_headers
        if k == b"set-cookie" and v.decode().startswith(f"{name}=")
    )


def test_a_token_verifies_for_the_binding_it_was_issued_for() -> None:
    csrf = CsrfTokens(KEY)

    assert csrf.verify("session-a", csrf.issue("session-a"))


def test_each_token_issued_is_different_and_each_verifies() -> None:
    csrf = CsrfTokens(KEY)

    first, second = csrf.issue("session-a"), csrf.issue("session-a")

    assert first != second
    assert csrf.verify("session-a", first)
    assert csrf.verify("session-a", second)


def test_a_token_of_one_session_does_not_verify_in_another() -> None:
    csrf = CsrfTokens(KEY)

    assert not csrf.verify("session-b", csrf.issue("session-a"))


def test_a_token_signed_with_another_key_does_not_verify() -> None:
    theirs = CsrfTokens(secrets.token_bytes(32)).issue("session-a")

    assert not CsrfTokens(KEY).verify("session-a", theirs)


@pytest.mark.parametrize(
    "token",
    ["", "no-dot", ".only-a-mac", "nonce.", "nonce.0123abcd", "x" * 500],
    ids=["empty", "no-dot", "no-nonce", "no-mac", "wrong-mac", "oversized"],
)
def test_a_malformed_or_forged_token_does_not_verify(token: str) -> None:
    assert not CsrfTokens(KEY).verify("session-a", token)


def test_a_tampered_nonce_does_not_verify() -> None:
    csrf = CsrfTokens(KEY)
    nonce, _, mac = csrf.issue("session-a").partition(".")

    assert not csrf.verify("session-a", f"{nonce}x.{mac}")


def test_nothing_verifies_without_a_binding_or_a_token() -> None:
    csrf = CsrfTokens(KEY)

    assert not csrf.verify(None, csrf.issue("session-a"))
    assert not csrf.verify("", csrf.issue(""))
    assert not csrf.verify("session-a", None)


def test_a_key_shorter_than_32_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        CsrfTokens(b"short")


def test_the_derived_key_is_stable_per_secret_and_not_the_secret() -> None:
    secret = "a-fake-jwt-secret-of-at-least-32-characters"

    key = derive_csrf_key(secret)

    assert key == derive_csrf_key(secret)
    assert key != derive_csrf_key(secret + "!")
    assert len(key) == 32
    assert secret.encode() not in key


def test_a_request_verifies_with_the_form_field_or_else_the_header() -> None:
    csrf = CsrfTokens(KEY)
    token = csrf.issue("session-a")

    assert csrf.verify_request(request(cookies={SESSION_COOKIE: "session-a"}), token)
    assert csrf.verify_request(
        request(cookies={SESSION_COOKIE: "session-a"}, headers={CSRF_HEADER: token}), None
    )
    assert not csrf.verify_request(request(headers={CSRF_HEADER: token}), None)  # no cookie


def test_the_session_cookie_is_the_binding_once_signed_in() -> None:
    signed_in = request(cookies={SESSION_COOKIE: "jwt", PRESESSION_COOKIE: "pre"})

    assert csrf_binding(signed_in) == "jwt"
    assert csrf_binding(request(cookies={PRESESSION_COOKIE: "pre"})) == "pre"
    assert csrf_binding(request()) is None


def test_a_first_visit_gets_a_new_random_presession_binding() -> None:
    first, new = presession_binding(request())
    again, new_again = presession_binding(request(cookies={PRESESSION_COOKIE: first}))

    assert new
    assert len(first) >= 40
    assert (again, new_again) == (first, False)
    assert presession_binding(request())[0] != first


def test_the_session_cookie_is_httponly_lax_scoped_to_app_and_expires_with_the_token() -> None:
    response = Response()

    set_session_cookie(response, request(), "jwt-value", 3600)

    cookie = set_cookies(response)[SESSION_COOKIE][SESSION_COOKIE]
    assert cookie.value == "jwt-value"
    assert cookie["httponly"] is True
    assert cookie["samesite"].lower() == "lax"
    assert cookie["path"] == COOKIE_PATH
    assert cookie["max-age"] == "3600"
    assert not cookie["secure"]  # plain http: a Secure cookie would never come back


def test_over_https_the_session_cookie_is_secure() -> None:
    response = Response()

    set_session_cookie(response, request(scheme="https"), "jwt-value", 3600)

    assert "; secure" in attributes(response, SESSION_COOKIE).lower()


def test_over_http_behind_an_https_public_address_the_session_cookie_is_secure() -> None:
    # A TLS-terminating proxy run without --proxy-headers: the request says http.
    response = Response()

    set_session_cookie(response, request(secure_cookies=True), "jwt-value", 3600)

    assert "; secure" in attributes(response, SESSION_COOKIE).lower()


def test_over_http_with_an_http_public_address_the_session_cookie_is_not_secure() -> None:
    response = Response()

    set_session_cookie(response, request(secure_cookies=False), "jwt-value", 3600)

    assert "; secure" not in attributes(response, SESSION_COOKIE).lower()


def test_over_https_the_cookie_is_secure_whatever_the_public_address() -> None:
    assert is_https(request(scheme="https", secure_cookies=False))


@pytest.mark.parametrize(
    ("public_base_url", "secure"),
    [
        ("https://lqs.example", True),
        ("HTTPS://lqs.example/", True),
        (" https://lqs.example ", True),
        ("http://lqs.example", False),
        ("http://localhost:8000", False),
        ("", False),
    ],
)
def test_cookies_are_secure_when_the_public_address_is_https(
    public_base_url: str, secure: bool
) -> None:
    assert secure_cookies_from(public_base_url) is secure


def test_signing_in_drops_the_presession_cookie() -> None:
    response = Response()

    set_session_cookie(response, request(), "jwt-value", 3600)

    dropped = set_cookies(response)[PRESESSION_COOKIE][PRESESSION_COOKIE]
    assert dropped.value == ""
    assert dropped["max-age"] == "0"


def test_signing_out_deletes_the_session_cookie() -> None:
    response = Response()

    clear_session_cookie(response, request(scheme="https"))

    cookie = set_cookies(response)[SESSION_COOKIE][SESSION_COOKIE]
    assert cookie.value == ""
    assert cookie["max-age"] == "0"
    assert cookie["path"] == COOKIE_PATH


def test_the_presession_cookie_is_httponly_lax_and_lasts_a_working_day() -> None:
    response = Response()

    set_presession_cookie(response, request(scheme="https"), "pre-value")

    header = attributes(response, PRESESSION_COOKIE).lower()
    assert "httponly" in header
    assert "samesite=lax" in header
    assert "; secure" in header
    assert f"max-age={PRESESSION_MAX_AGE}" in header


def test_an_empty_or_oversized_session_cookie_is_no_session() -> None:
    assert session_token(request(cookies={SESSION_COOKIE: "jwt"})) == "jwt"
    assert session_token(request(cookies={SESSION_COOKIE: ""})) is None
    assert session_token(request(cookies={SESSION_COOKIE: "x" * 5000})) is None
    assert session_token(request()) is None
