"""What the reading pages share: their filters read from the URL (the API's parser,
:mod:`lqs.api.read_filters`), the links to the next and the first page, the filtered
listing itself (:func:`filtered_listing`), one row by the id in its path
(:func:`by_path_id`) and the 404 page.

Every filter and the cursor travel in the URL, so a page is a link: it can be bookmarked,
shared and reloaded, and works without JavaScript (htmx only spares the full reload).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode
from uuid import UUID

from psycopg import AsyncConnection
from starlette.requests import Request
from starlette.responses import HTMLResponse

from lqs.api.errors import ApiError, invalid_parameter
from lqs.api.pages.layout import Viewer, render
from lqs.api.tenant import MAX_PAGE
from lqs.db.tenant_reads import Page
from lqs.domain.cursor import Cursor, encode_cursor
from lqs.domain.text import whole_number

PAGE_SIZE = 50
"""Rows per page unless the URL's ``limit`` says otherwise (1 to the API's ``MAX_PAGE``)."""


@dataclass(frozen=True)
class Pager:
    """Where the listing's other pages are (None: there is no such page)."""

    next_url: str | None
    first_url: str | None


def filled(params: Mapping[str, str]) -> dict[str, str]:
    """The query's non-blank parameters, without the cursor: the filter form's values."""
    return {name: value for name, value in params.items() if value != "" and name != "cursor"}


def page_size(text: str | None) -> int:
    """The URL's ``limit``: rows per page.

    Raises:
        ApiError: 422 naming ``limit``, not a whole number from 1 to :data:`MAX_PAGE`.
    """
    if not text:
        return PAGE_SIZE
    size = whole_number(text)
    if size is None or not 1 <= size <= MAX_PAGE:
        raise invalid_parameter("limit", f"must be a whole number from 1 to {MAX_PAGE}", 422)
    return size


def without_notice(request: Request) -> dict[str, str]:
    """The query's parameters but ``done`` (the notice an action's redirect shows once)."""
    return {name: value for name, value in request.query_params.items() if name != "done"}


def pager(path: str, params: Mapping[str, str], next_cursor: Cursor | str | None) -> Pager:
    """Links to the page after this one (the same filters and the cursor, decoded or as
    the API answers it) and, when this is not the first page, to the first."""
    kept = filled(params)
    next_url = None
    if next_cursor is not None:
        text = next_cursor if isinstance(next_cursor, str) else encode_cursor(next_cursor)
        next_url = f"{path}?{urlencode({**kept, 'cursor': text})}"
    first_url = None
    if params.get("cursor"):
        first_url = f"{path}?{urlencode(kept)}" if kept else path
    return Pager(next_url, first_url)


def refusal_status(request: Request, error: str | None) -> int:
    """A listing's status: 400 when its filters were refused, except for htmx, which
    swaps only successful answers (the message is in the page either way)."""
    if error is None or request.headers.get("hx-request") == "true":
        return 200
    return 400


async def filtered_listing(
    request: Request,
    viewer: Viewer,
    csrf_token: str,
    read: Callable[[Mapping[str, str]], Awaitable[Page[Any]]],
    *,
    path: str,
    template: str,
    title: str,
    not_filters: Collection[str] = ("limit",),
    **context: Any,
) -> HTMLResponse:
    """The listing at ``path`` whose filters, cursor and limit are in the URL: ``read``
    answers the page the query asks for, or raises the API's refusal, shown above no rows
    (with :func:`refusal_status`). ``template`` gets ``rows``, ``pager``, ``error``, the
    form's ``values`` and ``filtered`` (whether any of them is a filter, not one of
    ``not_filters``), and ``context``."""
    params = request.query_params
    values = filled(params)
    rows: list[Any] = []
    links = pager(path, params, None)
    error = None
    try:
        page = await read(params)
        rows = page.rows
        links = pager(path, params, page.next_cursor)
    except ApiError as exc:
        error = exc.message
    return render(
        request,
        template,
        title=title,
        viewer=viewer,
        csrf_token=csrf_token,
        status_code=refusal_status(request, error),
        values=values,
        rows=rows,
        pager=links,
        error=error,
        filtered=any(k not in not_filters for k in values),
        **context,
    )


def path_id(text: str) -> UUID | None:
    """The path's id; None when it is not a UUID (which names nothing, as an unknown id)."""
    try:
        return UUID(text)
    except ValueError:
        return None


Found = TypeVar("Found")


async def by_path_id(
    conn: AsyncConnection,
    text: str,
    read: Callable[[AsyncConnection, UUID], Awaitable[Found | None]],
) -> Found | None:
    """What ``read`` finds for the path's id ``text``; None when it is not a UUID, or
    nothing the user may see has that id (either way, the 404 page: :func:`not_found`)."""
    wanted = path_id(text)
    return None if wanted is None else await read(conn, wanted)


def not_found(request: Request, viewer: Viewer, csrf_token: str, what: str) -> HTMLResponse:
    """The 404 page: no such ``what``, or not the viewer's to see (the same answer)."""
    return render(
        request,
        "not_found.html",
        title="Not found",
        viewer=viewer,
        csrf_token=csrf_token,
        status_code=404,
        what=what,
    )
