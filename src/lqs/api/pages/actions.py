"""What the dashboard's action pages share: who may see them, their forms' CSRF tokens,
and refusals shown as pages.

A page's action is a :mod:`lqs.api.tenant_actions` function, the one the API calls; its
:class:`~lqs.api.errors.ApiError` becomes an HTML page with the same status
(:func:`refused`). A form's POST checks its CSRF token before anything is written
(:func:`posted_form`); pages give their forms :data:`~lqs.api.pages.signed_in.PageCsrfToken`.
An admin's action on one row (a plain form's or htmx's POST) is :func:`admin_row_action`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from psycopg import AsyncConnection

from lqs.api.browser_session import CSRF_FIELD, CsrfTokens
from lqs.api.errors import ApiError
from lqs.api.pages.layout import Viewer, read_form, render
from lqs.api.pages.signed_in import SignInRequired, viewer_for
from lqs.api.tenant_actions import member, require_admin
from lqs.api.tokens import Claims
from lqs.db.users import Profile

FORM_EXPIRED = ApiError(
    403, "csrf_failed", "This form had expired or did not come from this site. Please try again."
)
REFUSAL_TITLES = {
    400: "Bad request",
    403: "Not allowed",
    404: "Not found",
    409: "Not possible now",
}
REFUSAL_TEXTS = {
    "admin_only": "Only your organisation's owners and admins may see or do this.",
    "not_found": "There is no such item for your organisation.",
}
"""What a refusal page says, by the error's code (else the error's own message)."""


def refused(
    request: Request, viewer: Viewer | None, csrf_token: str, exc: ApiError
) -> HTMLResponse:
    """``exc`` as a page with its status: a title and what the user can do about it."""
    return render(
        request,
        "refused.html",
        title=REFUSAL_TITLES.get(exc.status, "Not possible"),
        viewer=viewer,
        csrf_token=csrf_token,
        status_code=exc.status,
        message=REFUSAL_TEXTS.get(exc.code, exc.message),
    )


async def page_profile(conn: AsyncConnection, user: Claims) -> tuple[Profile, Viewer]:
    """The user's profile and the header's viewer, read as the user.

    Raises:
        SignInRequired: the user belongs to no client (as :data:`PageViewer` does).
    """
    try:
        profile = await member(conn)
    except ApiError:
        raise SignInRequired(clear=True) from None
    return profile, viewer_for(profile, user)


async def posted_form(request: Request, csrf: CsrfTokens) -> dict[str, str]:
    """The posted form's fields, once its CSRF token (field or header) verifies.

    Raises:
        ApiError: 403 ``csrf_failed``.
    """
    form = await read_form(request)
    if not csrf.verify_request(request, form.get(CSRF_FIELD)):
        raise FORM_EXPIRED
    return form


def field_errors(exc: ApiError) -> dict[str, str]:
    """An error's problems by field name, to show next to each field."""
    return {problem.field: problem.message for problem in exc.fields or ()}


RowAction = Callable[[AsyncConnection, Profile, str], Awaitable[object]]
"""A :mod:`lqs.api.tenant_actions` action on one row: (connection, admin's profile, the
row's id from the path)."""


async def admin_row_action(
    request: Request,
    csrf: CsrfTokens,
    token: str,
    user: Claims,
    conn: AsyncConnection,
    action: RowAction,
    row_id: str,
    done_url: str,
    *,
    htmx_row: Callable[[str | None], Response] | None = None,
) -> Response:
    """A form's POST of an admin's ``action`` on the row ``row_id``: the form's CSRF token
    is checked first, then the user must be an owner or admin; the action runs in a
    savepoint, so a refusal undoes it whole. A refusal is a page with its status; success
    redirects (303) to ``done_url`` (the listing, with the notice its ``?done=`` names).

    ``htmx_row``: from htmx, the answer is instead the row in its new state
    (``htmx_row(None)``), or saying why the row refused the action (404 or 409:
    ``htmx_row(message)``), since htmx swaps only 2xx answers."""
    profile, viewer = await page_profile(conn, user)
    row = htmx_row if request.headers.get("hx-request") == "true" else None
    try:
        await posted_form(request, csrf)
        async with conn.transaction():  # a savepoint: a refusal undoes the action whole
            await action(conn, require_admin(profile), row_id)
    except ApiError as exc:
        if row is not None and exc.status in (404, 409):
            return row(exc.message)
        return refused(request, viewer, token, exc)
    if row is not None:
        return row(None)
    return RedirectResponse(done_url, status_code=303)
