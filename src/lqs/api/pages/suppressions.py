"""``/app/suppressions``: the client's suppression list, a page at a time; admins lift
one with its "Remove" button (``POST /app/suppressions/{id}/remove``, as ``DELETE
/v1/suppressions/{id}`` does: :func:`lqs.api.tenant_actions.lift_suppression`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from lqs.api import tenant_actions
from lqs.api.deps import Csrf
from lqs.api.errors import ApiError
from lqs.api.pages.actions import admin_row_action, page_profile, refused
from lqs.api.pages.layout import PAGES_PREFIX, render
from lqs.api.pages.listings import pager, without_notice
from lqs.api.pages.signed_in import PageCsrfToken, PageSession, PageTransaction, PageUser

router = APIRouter(prefix=PAGES_PREFIX, include_in_schema=False)

PATH = f"{PAGES_PREFIX}/suppressions"
PAGE_SIZE = 50
REMOVED = "The suppression was removed: messages to that recipient are sent again."
"""The notice after a removal (``?done=removed``)."""


@router.get("/suppressions")
async def suppressions(
    request: Request,
    token: PageCsrfToken,
    user: PageUser,
    conn: PageSession,
    cursor: str | None = None,
    done: str | None = None,
) -> Response:
    profile, viewer = await page_profile(conn, user)
    try:
        page = await tenant_actions.suppression_list(conn, profile, cursor, PAGE_SIZE)
    except ApiError as exc:
        return refused(request, viewer, token, exc)
    return render(
        request,
        "suppressions.html",
        title="Suppressions",
        viewer=viewer,
        csrf_token=token,
        rows=page.rows,
        pager=pager(request.url.path, without_notice(request), page.next_cursor),
        notice=REMOVED if done == "removed" else None,
    )


@router.post("/suppressions/{suppression_id}/remove")
async def remove_suppression(
    request: Request,
    csrf: Csrf,
    token: PageCsrfToken,
    user: PageUser,
    conn: PageTransaction,
    suppression_id: str,
) -> Response:
    return await admin_row_action(
        request, csrf, token, user, conn,
        tenant_actions.lift_suppression, suppression_id, f"{PATH}?done=removed",
    )  # fmt: skip
