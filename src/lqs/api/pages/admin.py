"""The dashboard's admin pages (owners and admins; anyone else gets a 403 page):

- ``/app/dead-letters``: the client's failed communications with why they failed, each
  with a "Retry" button (``POST /app/dead-letters/{id}/retry``, as ``POST
  /v1/communications/{id}/retry`` does). From htmx the answer is the row in its new state;
  from a plain form, a redirect to the list with a notice.
- ``/app/keys``: the client's API keys; creating one (``POST /app/keys``) shows its
  plaintext once, on the answer page only (never stored, never cached); revoking one asks
  for confirmation first (``GET``, then ``POST /app/keys/{id}/revoke``).

Every action is a :mod:`lqs.api.tenant_actions` function, the one the API calls.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from psycopg import AsyncConnection

from lqs.api import tenant_actions
from lqs.api.deps import ApiKeys, Csrf
from lqs.api.errors import ApiError, invalid_parameter
from lqs.api.pages.actions import admin_row_action, field_errors, page_profile, posted_form, refused
from lqs.api.pages.layout import PAGES_PREFIX, Viewer, render, templates
from lqs.api.pages.listings import pager, without_notice
from lqs.api.pages.signed_in import PageCsrfToken, PageSession, PageTransaction, PageUser
from lqs.db.clients import ApiKey, list_api_keys
from lqs.db.tenant_reads import TenantCommunicationFilter, communications_page
from lqs.db.users import Profile
from lqs.domain.cursor import InvalidCursor, decode_cursor
from lqs.domain.text import whole_number

router = APIRouter(prefix=PAGES_PREFIX, include_in_schema=False)

DEAD_LETTERS_PATH = f"{PAGES_PREFIX}/dead-letters"
KEYS_PATH = f"{PAGES_PREFIX}/keys"
PAGE_SIZE = 50
FAILED = "failed"
RETRIED = "The communication was queued again: the dispatcher sends it shortly."
"""The dead letters' notice after a plain form's retry (``?done=retried``)."""
REVOKED = "The API key was revoked: requests with it are refused from now on."
"""The keys' notice after a revocation (``?done=revoked``)."""
NAME_FIELD, RATE_FIELD = "name", "rate_limit_per_minute"


# ---------------------------------------------------------------- dead letters


@router.get("/dead-letters")
async def dead_letters(
    request: Request,
    token: PageCsrfToken,
    user: PageUser,
    conn: PageSession,
    cursor: str | None = None,
    done: str | None = None,
) -> Response:
    profile, viewer = await page_profile(conn, user)
    try:
        tenant_actions.require_admin(profile)
        after = None
        if cursor is not None:
            try:
                after = decode_cursor(cursor, "created", datetime)
            except InvalidCursor as exc:
                raise invalid_parameter("cursor", str(exc)) from None
    except ApiError as exc:
        return refused(request, viewer, token, exc)
    wanted = TenantCommunicationFilter(status=FAILED, client_id=profile.client_id)
    page = await communications_page(conn, wanted, limit=PAGE_SIZE, after=after)
    return render(
        request,
        "dead_letters.html",
        title="Dead letters",
        viewer=viewer,
        csrf_token=token,
        rows=page.rows,
        pager=pager(request.url.path, without_notice(request), page.next_cursor),
        notice=RETRIED if done == "retried" else None,
    )


def _retried_row(communication_id: str, error: str | None) -> HTMLResponse:
    """The row of a communication after a "Retry" from htmx: queued again, or why not."""
    html = templates.get_template("_dead_letter_retried.html").render(
        communication_id=communication_id,
        status=tenant_actions.RETRIED_STATUS,
        error=error,
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


@router.post("/dead-letters/{communication_id}/retry")
async def retry(
    request: Request,
    csrf: Csrf,
    token: PageCsrfToken,
    user: PageUser,
    conn: PageTransaction,
    communication_id: str,
) -> Response:
    return await admin_row_action(
        request, csrf, token, user, conn,
        tenant_actions.retry_communication, communication_id, f"{DEAD_LETTERS_PATH}?done=retried",
        htmx_row=partial(_retried_row, communication_id),
    )  # fmt: skip


# ---------------------------------------------------------------- API keys


async def _keys_page(
    request: Request,
    token: str,
    conn: AsyncConnection,
    viewer: Viewer,
    client_id: UUID,
    *,
    notice: str | None = None,
    name: str = "",
    rate: str = str(tenant_actions.DEFAULT_KEY_RATE),
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The keys, and the form to create one (with what was typed and its problems)."""
    return render(
        request,
        "keys.html",
        title="API keys",
        viewer=viewer,
        csrf_token=token,
        status_code=status_code,
        keys=await list_api_keys(conn, client_id),
        notice=notice,
        name=name,
        rate=rate,
        errors=errors or {},
    )


@router.get("/keys")
async def keys(
    request: Request,
    token: PageCsrfToken,
    user: PageUser,
    conn: PageSession,
    done: str | None = None,
) -> Response:
    profile, viewer = await page_profile(conn, user)
    try:
        tenant_actions.require_admin(profile)
    except ApiError as exc:
        return refused(request, viewer, token, exc)
    notice = REVOKED if done == "revoked" else None
    return await _keys_page(request, token, conn, viewer, profile.client_id, notice=notice)


def _whole_number(text: str) -> int | str:
    """``text`` as a whole number, else as it is (which the key's checks refuse)."""
    number = whole_number(text)
    return text if number is None else number


@router.post("/keys")
async def create_key(
    request: Request, csrf: Csrf, token: PageCsrfToken, user: PageUser, conn: PageTransaction
) -> Response:
    profile, viewer = await page_profile(conn, user)
    try:
        form = await posted_form(request, csrf)
        admin = tenant_actions.require_admin(profile)
    except ApiError as exc:
        return refused(request, viewer, token, exc)
    name, rate = form.get(NAME_FIELD, "").strip(), form.get(RATE_FIELD, "").strip()
    try:
        async with conn.transaction():  # a savepoint: a refusal undoes the action whole
            rate_value = _whole_number(rate)
            if problems := tenant_actions.new_key_problems(name, rate_value):
                raise tenant_actions.invalid_body(problems)
            assert isinstance(rate_value, int)
            key, plaintext = await tenant_actions.create_key(conn, admin, name, rate_value)
    except ApiError as exc:
        return await _keys_page(
            request, token, conn, viewer, profile.client_id,
            name=name, rate=rate, errors=field_errors(exc), status_code=422,
        )  # fmt: skip
    # The only time the plaintext is shown: this answer is never cached (render's no-store).
    return render(
        request,
        "key_created.html",
        title="API key created",
        viewer=viewer,
        csrf_token=token,
        status_code=201,
        key=key,
        plaintext=plaintext,
    )


@router.get("/keys/{key_id}/revoke")
async def confirm_revoke(
    request: Request,
    token: PageCsrfToken,
    user: PageUser,
    conn: PageSession,
    key_id: str,
) -> Response:
    profile, viewer = await page_profile(conn, user)
    try:
        tenant_actions.require_admin(profile)
        key = await tenant_actions.client_key(conn, profile, key_id)
    except ApiError as exc:
        return refused(request, viewer, token, exc)
    return render(
        request,
        "key_revoke.html",
        title="Revoke an API key",
        viewer=viewer,
        csrf_token=token,
        key=key,
    )


@router.post("/keys/{key_id}/revoke")
async def revoke_key(
    request: Request,
    csrf: Csrf,
    token: PageCsrfToken,
    user: PageUser,
    conn: PageTransaction,
    keys: ApiKeys,
    key_id: str,
) -> Response:
    async def revoke(conn: AsyncConnection, profile: Profile, key_id: str) -> ApiKey:
        revoked = await tenant_actions.revoke_key(conn, profile, key_id)
        keys.forget()  # refused by this process at once, by the others within seconds
        return revoked

    return await admin_row_action(
        request, csrf, token, user, conn, revoke, key_id, f"{KEYS_PATH}?done=revoked",
    )  # fmt: skip
