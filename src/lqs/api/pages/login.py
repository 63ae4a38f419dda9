"""``/app/login``: the sign-in form; ``POST /app/logout``: signing out.

``POST /app/login`` checks the form's CSRF token, signs in exactly as ``POST /auth/login``
does (:func:`lqs.api.auth.sign_in`: password, lockout, disabled users), sets the session
cookie to the access token (:func:`~lqs.api.browser_session.set_session_cookie`) and
redirects to the overview. A refusal shows the form again with the reason and the same
status the API would answer.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lqs.api.auth import client_address, sign_in
from lqs.api.browser_session import (
    CSRF_FIELD,
    clear_session_cookie,
    presession_binding,
    set_presession_cookie,
    set_session_cookie,
)
from lqs.api.deps import Csrf, Pool, SignInGuard, Tokens
from lqs.api.errors import ApiError
from lqs.api.pages.layout import PAGES_PREFIX, read_form, render
from lqs.api.pages.signed_in import LOGIN_PATH
from lqs.domain.passwords import MAX_LENGTH
from lqs.domain.text import unstorable_text

router = APIRouter(prefix=PAGES_PREFIX, include_in_schema=False)

OVERVIEW_PATH = f"{PAGES_PREFIX}/"
NOT_CONFIGURED = "Sign-in is not configured on this server (LQS_JWT_SECRET)."
REFUSALS = {
    "invalid_credentials": "The email or password is wrong.",
    "locked_out": "Too many wrong passwords: sign-in is locked for a while. Try again later.",
    "rate_limited": "Too many sign-in attempts from here. Try again in a minute.",
    "sign_in_busy": "The server is busy signing others in. Try again in a moment.",
    "user_disabled": "This user is disabled. Ask an administrator of your organisation.",
    "sign_in_not_configured": NOT_CONFIGURED,
}
"""What the form says for each refusal of :func:`~lqs.api.auth.sign_in`, by its code."""
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
async def login(
    request: Request, csrf: Csrf, pool: Pool, tokens: Tokens, limits: SignInGuard
) -> Response:
    form = await read_form(request)
    email = form.get("email", "").strip()[:320]
    if not csrf.verify_request(request, form.get(CSRF_FIELD)):
        return _form(request, csrf, email=email, error=FORM_EXPIRED, status=403)
    password = form.get("password", "")
    if (
        not email
        or not password
        or len(password) > MAX_LENGTH
        or unstorable_text(email)
        or unstorable_text(password)
    ):
        return _form(request, csrf, email=email, error="Enter your email and password.", status=422)
    try:
        signed_in = await sign_in(
            pool, tokens, email, password, limits=limits, address=client_address(request)
        )
    except ApiError as exc:
        page = _form(
            request, csrf, email=email, error=REFUSALS.get(exc.code, exc.message), status=exc.status
        )
        if exc.headers:
            page.headers.update(exc.headers)
        return page
    response = RedirectResponse(OVERVIEW_PATH, status_code=303)
    set_session_cookie(response, request, signed_in.access_token, signed_in.expires_in)
    return response


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
