"""``/app/login``: the sign-in form; ``POST /app/logout``: signing out.

``POST /app/login`` checks the form's CSRF token, then answers the form again saying that
sign-in is not configured: lqs's own sign-in (``POST /auth/login``) is not in this release
yet. Once it is, the handler signs in with it, sets the session cookie
(:func:`~lqs.api.browser_session.set_session_cookie`) and redirects to the overview.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lqs.api.browser_session import (
    CSRF_FIELD,
    clear_session_cookie,
    presession_binding,
    set_presession_cookie,
)
from lqs.api.deps import Csrf
from lqs.api.pages.layout import PAGES_PREFIX, read_form, render
from lqs.api.pages.signed_in import LOGIN_PATH

router = APIRouter(prefix=PAGES_PREFIX, include_in_schema=False)

NOT_CONFIGURED = "Sign-in is not configured on this server yet."
FORM_EXPIRED = "This form had expired. Please sign in again."


def _form(
    request: Request, csrf: Csrf, *, email: str = "", error: str | None = None, status: int = 200
) -> HTMLResponse:
    binding, new = presession_binding(request)
    page = render(
        request,
        "login.html",
        title="Sign in",
        csrf_token=csrf.issue(binding),
        status_code=status,
        email=email,
        error=error,
    )
    if new:
        set_presession_cookie(page, request, binding)
    return page


@router.get("/login")
async def login_form(request: Request, csrf: Csrf) -> HTMLResponse:
    return _form(request, csrf)


@router.post("/login")
async def login(request: Request, csrf: Csrf) -> HTMLResponse:
    form = await read_form(request)
    email = form.get("email", "").strip()[:320]
    if not csrf.verify_request(request, form.get(CSRF_FIELD)):
        return _form(request, csrf, email=email, error=FORM_EXPIRED, status=403)
    return _form(request, csrf, email=email, error=NOT_CONFIGURED, status=503)


@router.post("/logout")
async def logout(request: Request, csrf: Csrf) -> Response:
    """Delete the session cookie and go to the sign-in form (the access token itself
    stays valid until it expires: tokens are not revoked)."""
    form = await read_form(request)
    if not csrf.verify_request(request, form.get(CSRF_FIELD)):
        return _form(request, csrf, error=FORM_EXPIRED, status=403)
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    clear_session_cookie(response, request)
    return response
