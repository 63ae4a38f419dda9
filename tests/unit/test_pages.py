"""The dashboard's pages over HTTP (no browser, no database: the sign-in form needs
neither): headers, the sign-in form's CSRF check and placeholder answer, the vendored
files, the layout's navigation. tests/browser drives the same pages in Chromium."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request

import lqs.api
from lqs.api.app import create_app
from lqs.api.browser_session import CSRF_FIELD, PRESESSION_COOKIE, SESSION_COOKIE
from lqs.api.limits import SignInLimits
from lqs.api.pages.layout import (
    CONTENT_SECURITY_POLICY,
    MAX_FORM_FIELDS,
    NAV,
    Viewer,
    read_form,
    render,
)
from lqs.api.pages.login import FORM_EXPIRED, NOT_CONFIGURED
from tests.configs import api_config

STATIC = Path(lqs.api.__file__).parent / "static"
UNREACHABLE_DB = "postgresql://nobody@127.0.0.1:1/none"  # no route here touches it


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(UNREACHABLE_DB, api_config())
    # No lifespan here: what it would open, the sign-in form only reads (no secret: 503).
    app.state.pool = None
    app.state.tokens = None
    app.state.sign_in_limits = SignInLimits.create(5, 900.0)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://lqs.test") as http:
        yield http


def hidden_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the form has no CSRF token"
    return found.group(1)


async def test_sign_in_page_carries_the_security_headers_and_is_not_cached(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/app/login")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers["cache-control"] == "no-store"


async def test_the_policy_allows_only_this_origins_scripts() -> None:
    directives = dict(d.split(" ", 1) for d in CONTENT_SECURITY_POLICY.split("; "))

    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY


async def test_every_response_under_app_carries_the_policy_and_none_outside(
    client: httpx.AsyncClient,
) -> None:
    static = await client.get("/app/static/app.js")
    missing = await client.get("/app/no-such-page")
    docs = await client.get("/docs")  # Swagger UI has inline script: not a page of /app

    assert static.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert missing.status_code == 404
    assert missing.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert docs.status_code == 200
    assert "content-security-policy" not in docs.headers


async def test_sign_in_page_has_no_inline_script_or_style(client: httpx.AsyncClient) -> None:
    html = (await client.get("/app/login")).text

    assert re.findall(r"<script(?![^>]*\ssrc=)[^>]*>", html) == []
    assert "<style" not in html
    assert " style=" not in html
    assert re.findall(r"\son[a-z]+=", html) == []  # no inline event handlers


async def test_first_visit_gets_a_presession_cookie_and_a_token_bound_to_it(
    client: httpx.AsyncClient,
) -> None:
    first = await client.get("/app/login")
    again = await client.get("/app/login")  # the client sends the cookie back

    assert PRESESSION_COOKIE in first.cookies
    assert "set-cookie" not in again.headers
    assert hidden_token(first.text) != hidden_token(again.text)


async def test_posting_the_form_with_its_token_says_sign_in_is_not_configured(
    client: httpx.AsyncClient,
) -> None:
    token = hidden_token((await client.get("/app/login")).text)

    response = await client.post(
        "/app/login",
        data={"email": "ada@example.com", "password": "not-checked-yet", CSRF_FIELD: token},
    )

    assert response.status_code == 503
    assert NOT_CONFIGURED in response.text
    assert 'value="ada@example.com"' in response.text
    assert "not-checked-yet" not in response.text  # a password is never echoed
    assert SESSION_COOKIE not in response.cookies


async def test_posting_the_form_without_a_token_is_refused_as_expired(
    client: httpx.AsyncClient,
) -> None:
    await client.get("/app/login")  # has the cookie, not the token

    response = await client.post("/app/login", data={"email": "ada@example.com", "password": "x"})

    assert response.status_code == 403
    assert FORM_EXPIRED in response.text
    assert NOT_CONFIGURED not in response.text


async def test_a_token_from_another_browser_is_refused(client: httpx.AsyncClient) -> None:
    token = hidden_token((await client.get("/app/login")).text)
    client.cookies.clear()  # another browser: no cookie, or a cookie of its own
    await client.get("/app/login")

    response = await client.post("/app/login", data={"email": "a@example.com", CSRF_FIELD: token})

    assert response.status_code == 403


async def test_a_form_posted_as_json_is_refused(client: httpx.AsyncClient) -> None:
    token = hidden_token((await client.get("/app/login")).text)

    response = await client.post("/app/login", json={"email": "a@example.com", CSRF_FIELD: token})

    assert response.status_code == 403


async def test_what_the_form_echoes_is_escaped(client: httpx.AsyncClient) -> None:
    token = hidden_token((await client.get("/app/login")).text)

    response = await client.post(
        "/app/login", data={"email": '"><script>alert(1)</script>', CSRF_FIELD: token}
    )

    assert "<script>alert(1)" not in response.text
    assert "&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in response.text


def vendored() -> list[tuple[str, str, str, str]]:
    lines = (STATIC / "vendor" / "VERSIONS").read_text().splitlines()
    return [tuple(line.split()) for line in lines if line and not line.startswith("#")]  # type: ignore[misc]


def test_every_vendored_file_matches_its_recorded_digest_and_has_its_licence() -> None:
    files = vendored()

    assert {(package, version) for package, version, _, _ in files} == {
        ("htmx.org", "2.0.11"),
        ("chart.js", "4.6.2"),
    }
    for package, _, name, digest in files:
        assert (
            hashlib.sha256((STATIC / "vendor" / package / name).read_bytes()).hexdigest() == digest
        )
    for package in {package for package, _, _, _ in files}:
        names = {name for p, _, name, _ in files if p == package}
        assert any(name.upper().startswith("LICENSE") for name in names), package
        assert any(name.endswith(".js") for name in names), package


async def test_vendored_scripts_are_served_from_the_package(client: httpx.AsyncClient) -> None:
    for path in ("vendor/htmx.org/htmx.min.js", "vendor/chart.js/chart.umd.min.js", "app.js"):
        response = await client.get(f"/app/static/{path}")

        assert response.status_code == 200, path
        assert "javascript" in response.headers["content-type"], path
        assert response.content == (STATIC / path).read_bytes()


def page_request(path: str) -> Request:
    return Request(
        {
            "type": "http",
            "method": "GET",
            "scheme": "http",
            "server": ("lqs.test", 80),
            "path": path,
            "query_string": b"",
            "headers": [],
        }
    )


def nav_labels(html: str) -> list[str]:
    nav = html.split('<nav aria-label="Main">', 1)[1].split("</nav>", 1)[0]
    return re.findall(r">([^<]+)</a>", nav)


def test_admins_see_the_admin_links_and_members_do_not() -> None:
    admin = Viewer(email="root@example.com", client_name="Acme", is_admin=True)
    member = Viewer(email="ada@example.com", client_name="Acme", is_admin=False)

    as_admin = render(page_request("/app/leads"), "base.html", title="Leads", viewer=admin)
    as_member = render(page_request("/app/leads"), "base.html", title="Leads", viewer=member)

    assert nav_labels(as_admin.body.decode()) == [item.label for item in NAV]
    assert nav_labels(as_member.body.decode()) == [i.label for i in NAV if not i.admin_only]
    assert "Dead letters" not in nav_labels(as_member.body.decode())


def test_the_current_page_is_marked_in_the_navigation() -> None:
    viewer = Viewer(email="ada@example.com", client_name="Acme", is_admin=False)

    html = render(page_request("/app/leads"), "base.html", title="Leads", viewer=viewer).body

    assert b'<a href="/app/leads" aria-current="page">Leads</a>' in html
    assert html.count(b"aria-current") == 1


def test_a_page_for_anyone_has_no_navigation() -> None:
    html = render(page_request("/app/login"), "base.html", title="Sign in").body

    assert b"<nav" not in html


async def test_a_form_with_too_many_fields_reads_as_empty() -> None:
    body = "&".join(f"f{i}=v" for i in range(MAX_FORM_FIELDS + 1)).encode()

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    request = Request(
        {
            "type": "http",
            "method": "POST",
            "path": "/app/login",
            "query_string": b"",
            "headers": [(b"content-type", b"application/x-www-form-urlencoded")],
        },
        receive,
    )

    assert await read_form(request) == {}


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(first: str, second: str) -> float:
    """WCAG 2's contrast ratio of two #rrggbb colours."""
    light, dark = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


@pytest.mark.parametrize(
    ("foreground", "background", "minimum"),
    [
        ("--text", "--background", 4.5),
        ("--muted", "--background", 4.5),
        ("--link", "--background", 4.5),
        ("#ffffff", "--header", 4.5),  # the header's text and links, the button's label
        ("--error", "#fdf2f3", 4.5),  # an error notice
        ("--border", "--background", 3.0),  # an input's edge
        ("--focus", "--header", 3.0),  # the focus ring on the header
        ("--text", "--focus", 3.0),  # the focus ring's dark edge against its light one
    ],
)
def test_stylesheet_colours_meet_wcag_aa_contrast(
    foreground: str, background: str, minimum: float
) -> None:
    variables = dict(re.findall(r"(--[a-z]+):\s*(#[0-9a-f]{6});", (STATIC / "app.css").read_text()))

    def colour(name: str) -> str:
        return variables[name] if name.startswith("--") else name

    assert contrast(colour(foreground), colour(background)) >= minimum
