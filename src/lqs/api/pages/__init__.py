"""The dashboard: server-rendered pages under ``/app`` (Jinja2 and htmx), their static
files at ``/app/static`` (served from this package: the vendored htmx and Chart.js, see
``scripts/vendor_js.sh``) and their security headers (:mod:`lqs.api.pages.layout`)."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from lqs.api.browser_session import SECURE_COOKIES_STATE, CsrfTokens
from lqs.api.pages import (
    admin,
    communications,
    leads,
    login,
    overview,
    rules_test,
    suppressions,
)
from lqs.api.pages.layout import STATIC_URL, PageSecurityHeaders
from lqs.api.pages.signed_in import SignInRequired, to_sign_in


def install(app: FastAPI, csrf_key: bytes, *, secure_cookies: bool = False) -> None:
    """Add the pages, their static files and their headers to ``app``. ``secure_cookies``:
    every cookie is ``Secure``, even on a request that arrived over http (see
    :func:`~lqs.api.browser_session.secure_cookies_from`)."""
    app.state.csrf = CsrfTokens(csrf_key)
    setattr(app.state, SECURE_COOKIES_STATE, secure_cookies)
    app.add_middleware(PageSecurityHeaders)
    app.add_exception_handler(SignInRequired, to_sign_in)
    app.mount(STATIC_URL, StaticFiles(packages=[("lqs.api", "static")]), name="static")
    app.include_router(login.router)
    app.include_router(overview.router)
    app.include_router(leads.router)
    app.include_router(communications.router)
    app.include_router(suppressions.router)
    app.include_router(admin.router)
    app.include_router(rules_test.router)
