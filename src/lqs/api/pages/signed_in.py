"""Who a dashboard page is for: the user of the browser's session cookie.

A page declares :data:`PageUser` (the verified claims) or :data:`PageSession` (a
transaction run as that user, so row-level security decides what the page shows). A
request without a valid session (no cookie, an expired or forged token, no way to verify
tokens configured; a user disabled, or whose password changed since, once a
:data:`PageSession` opens) is sent to ``/app/login``: a 303 for a page, ``HX-Redirect`` for
an htmx request, which would otherwise swap the sign-in page into a fragment. An invalid
cookie is deleted on the way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response
from psycopg import AsyncConnection
from starlette.responses import RedirectResponse

from lqs.api.browser_session import clear_session_cookie, session_token
from lqs.api.deps import Csrf, Pool, SessionEnded, Tokens, session_as
from lqs.api.errors import ApiError
from lqs.api.pages.layout import PAGES_PREFIX, Viewer
from lqs.api.tokens import Claims, InvalidToken
from lqs.db.users import Profile, own_profile

LOGIN_PATH = f"{PAGES_PREFIX}/login"


class SignInRequired(ApiError):
    """Raised by :data:`PageUser` when the request has no valid session; answered by
    :func:`to_sign_in` with a redirect to the sign-in form (a 401 only where that handler
    is not installed). ``clear``: the request carried a session cookie that is no good."""

    def __init__(self, *, clear: bool) -> None:
        super().__init__(401, "sign_in_required", "sign in at /app/login to see this page")
        self.clear = clear


async def to_sign_in(request: Request, exc: Exception) -> Response:
    """The exception handler for :class:`SignInRequired`."""
    if not isinstance(exc, SignInRequired):  # registered for SignInRequired only
        raise exc
    response: Response
    if request.headers.get("hx-request") == "true":
        response = Response(status_code=204, headers={"HX-Redirect": LOGIN_PATH})
    else:
        response = RedirectResponse(LOGIN_PATH, status_code=303)
    if exc.clear:
        clear_session_cookie(response, request)
    return response


async def _page_user(request: Request, tokens: Tokens) -> Claims:
    token = session_token(request)
    if token is None:
        raise SignInRequired(clear=False)
    if tokens is None:
        raise SignInRequired(clear=True)
    try:
        return await tokens.verify(token)
    except InvalidToken:
        raise SignInRequired(clear=True) from None


PageUser = Annotated[Claims, Depends(_page_user)]
"""The signed-in user of the browser's session cookie (else a redirect to sign in)."""


async def _page_session(user: PageUser, pool: Pool) -> AsyncIterator[AsyncConnection]:
    try:
        async with session_as(pool, user) as conn:
            yield conn
    except SessionEnded:
        # Only raised before the block runs (the user was disabled or changed password).
        raise SignInRequired(clear=True) from None


PageSession = Annotated[AsyncConnection, Depends(_page_session)]
"""A transaction run as the page's user (row-level security decides what it sees)."""
PageTransaction = Annotated[AsyncConnection, Depends(_page_session, scope="function")]
"""As :data:`PageSession`, but committed when the handler returns, before the response is
sent (a form's action: a failed commit is answered as an error, never after a success)."""


def viewer_for(profile: Profile, user: Claims) -> Viewer:
    """The page's user as the header shows them, from their own profile."""
    return Viewer(
        email=profile.email or user.email or "",
        client_name=profile.client_name,
        is_admin=profile.is_admin,
    )


async def _page_viewer(user: PageUser, conn: PageSession) -> Viewer:
    """The page's user as the header shows them, read as that user (their own profile).

    Raises:
        SignInRequired: the token's user has no profile (belongs to no client): the
            session is dropped, as signing in again cannot help until one is added.
    """
    profile = await own_profile(conn)
    if profile is None:
        raise SignInRequired(clear=True)
    return viewer_for(profile, user)


PageViewer = Annotated[Viewer, Depends(_page_viewer)]
"""Who the page is for (name, client, admin or not), for the layout's header and links."""


async def _page_csrf_token(request: Request, user: PageUser, csrf: Csrf) -> str:
    """A CSRF token bound to the page's session cookie, for its forms (signing out)."""
    return csrf.issue(session_token(request) or "")


PageCsrfToken = Annotated[str, Depends(_page_csrf_token)]
"""The CSRF token a signed-in page's forms and htmx requests send back."""
