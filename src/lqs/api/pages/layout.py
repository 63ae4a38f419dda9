"""What every dashboard page stands on: the templates, the layout's navigation, the
security headers of ``/app`` and reading a posted form.

Templates (``lqs/api/templates``) are Jinja2 with autoescaping on: a value is text unless
a template says otherwise. Pages extend ``base.html`` (skip link, header with the client's
name, the main navigation, ``<main>``); no page has inline script or style, which the
Content-Security-Policy refuses: behaviour lives in ``static/*.js``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from jinja2 import Environment, PackageLoader, StrictUndefined, Template
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGES_PREFIX = "/app"
STATIC_URL = f"{PAGES_PREFIX}/static"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "frame-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)
"""Only this origin's files run or style a page: no inline script, no ``eval``, no CDN."""

PAGE_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
"""Set on every response under ``/app`` (pages, fragments, static files, errors) that
does not set its own: an email's content sets a stricter policy of its own
(:data:`lqs.api.pages.communications.EMAIL_CONTENT_HEADERS`)."""


@dataclass(frozen=True)
class NavItem:
    label: str
    path: str
    admin_only: bool = False


NAV: tuple[NavItem, ...] = (
    NavItem("Overview", f"{PAGES_PREFIX}/"),
    NavItem("Leads", f"{PAGES_PREFIX}/leads"),
    NavItem("Communications", f"{PAGES_PREFIX}/communications"),
    NavItem("Suppressions", f"{PAGES_PREFIX}/suppressions"),
    NavItem("Dead letters", f"{PAGES_PREFIX}/dead-letters", admin_only=True),
    NavItem("API keys", f"{PAGES_PREFIX}/keys", admin_only=True),
    NavItem("Rules tester", f"{PAGES_PREFIX}/rules-test"),
)
"""The main navigation, in order; a page is added here in one line."""


@dataclass(frozen=True)
class Viewer:
    """Who a page is shown to: the header names their client, the navigation shows the
    admin-only links to admins."""

    email: str
    client_name: str
    is_admin: bool


def _static(path: str) -> str:
    return f"{STATIC_URL}/{path}"


templates = Environment(
    loader=PackageLoader("lqs.api", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.globals["static"] = _static


def _when(moment: datetime | None) -> str:
    """A moment as pages show it: UTC, to the second (blank for none)."""
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


templates.filters["when"] = _when


def render(
    request: Request,
    template: str | Template,
    *,
    title: str,
    viewer: Viewer | None = None,
    csrf_token: str | None = None,
    charts: bool = False,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """``template`` (a name in ``lqs/api/templates``) rendered in the layout.

    ``viewer`` None: a page for anyone (no navigation); ``csrf_token``: the token forms
    and htmx requests send back; ``charts``: the page loads Chart.js and
    ``static/charts.js`` (``<canvas data-chart='{...}'>``).
    Pages are never cached: they show a tenant's data."""
    nav = [item for item in NAV if viewer is not None and (viewer.is_admin or not item.admin_only)]
    if isinstance(template, str):
        template = templates.get_template(template)
    html = template.render(
        title=title,
        viewer=viewer,
        csrf_token=csrf_token,
        charts=charts,
        nav=nav,
        current_path=request.url.path,
        **context,
    )
    return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})


MAX_FORM_FIELDS = 50


async def read_form(request: Request) -> dict[str, str]:
    """A posted ``application/x-www-form-urlencoded`` form's fields (the first value of
    each; at most :data:`MAX_FORM_FIELDS`); empty for any other body. The body's size is
    already bounded (:class:`~lqs.api.limits.BodySizeLimit`)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return {}
    body = (await request.body()).decode("utf-8", errors="replace")
    try:
        pairs = parse_qsl(body, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except ValueError:  # more fields than allowed
        return {}
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


def _under_pages(path: str) -> bool:
    return path == PAGES_PREFIX or path.startswith(f"{PAGES_PREFIX}/")


class PageSecurityHeaders:
    """ASGI middleware: :data:`PAGE_HEADERS` on every response under ``/app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _under_pages(scope["path"]):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in PAGE_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
