"""``/app/communications``: the client's communications, filtered as
``GET /v1/communications`` filters them (every filter in the URL), a page at a time;
``/app/communications/{id}``: one with its lead, attempts, provider events and content.

Stored content is shown, never run: an HTML email in ``<iframe sandbox="">`` loaded from
``/app/communications/{id}/content`` (no scripts, no same-origin access; that answer's own
Content-Security-Policy lets the email's inline styles apply, loads no remote image or
font, and sandboxes the document even when opened on its own), anything else as text in
``<pre>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from lqs.api.pages.layout import PAGES_PREFIX, render
from lqs.api.pages.listings import by_path_id, filtered_listing, not_found, page_size
from lqs.api.pages.signed_in import PageCsrfToken, PageSession, PageViewer
from lqs.api.read_filters import CommunicationQuery, communication_filter, page_cursor, parse_query
from lqs.db.tenant_reads import (
    CommunicationListing,
    Page,
    communication_detail,
    communications_page,
)
from lqs.domain.vocabulary import Channel, CommunicationStatus

router = APIRouter(prefix=PAGES_PREFIX, include_in_schema=False)

COMMUNICATIONS_PATH = f"{PAGES_PREFIX}/communications"

EMAIL_CONTENT_HEADERS = {
    "Content-Security-Policy": "; ".join(
        (
            "default-src 'none'",
            "style-src 'unsafe-inline'",  # the email's own <style> and style="..."
            "img-src data:",  # no remote image: no tracking pixel fires
            "frame-ancestors 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "sandbox",  # scripts off and an opaque origin, framed or not
        )
    ),
    "X-Frame-Options": "SAMEORIGIN",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
"""The headers of an email's content: framed by the communication's page only."""


@router.get("/communications", response_class=HTMLResponse)
async def communications(
    request: Request, conn: PageSession, viewer: PageViewer, csrf_token: PageCsrfToken
) -> HTMLResponse:
    async def read(params: Mapping[str, str]) -> Page[CommunicationListing]:
        wanted = communication_filter(parse_query(CommunicationQuery, params))
        after = page_cursor(params.get("cursor") or None, "created", datetime)
        return await communications_page(
            conn, wanted, limit=page_size(params.get("limit")), after=after
        )

    return await filtered_listing(
        request,
        viewer,
        csrf_token,
        read,
        path=COMMUNICATIONS_PATH,
        template="communications.html",
        title="Communications",
        channels=[str(c) for c in Channel],
        statuses=[str(s) for s in CommunicationStatus],
    )


def shown_as_html(channel: str, content: str | None) -> bool:
    """Whether stored content is an HTML email (shown in a sandboxed frame) rather than
    text (shown as it is)."""
    return channel == Channel.EMAIL and content is not None and "<" in content


@router.get("/communications/{communication_id}", response_class=HTMLResponse)
async def communication(
    request: Request,
    conn: PageSession,
    viewer: PageViewer,
    csrf_token: PageCsrfToken,
    communication_id: str,
) -> HTMLResponse:
    found = await by_path_id(conn, communication_id, communication_detail)
    if found is None:
        return not_found(request, viewer, csrf_token, "communication")
    row = found.communication
    return render(
        request,
        "communication.html",
        title=f"Communication {row['subject'] or row['channel']}",
        viewer=viewer,
        csrf_token=csrf_token,
        communication=row,
        html_content=shown_as_html(row["channel"], row["content"]),
        content_url=f"{COMMUNICATIONS_PATH}/{row['id']}/content",
        attempts=found.attempts,
        events=found.events,
    )


@router.get("/communications/{communication_id}/content", response_class=HTMLResponse)
async def communication_content(
    request: Request,
    conn: PageSession,
    viewer: PageViewer,
    csrf_token: PageCsrfToken,
    communication_id: str,
) -> Response:
    """The stored HTML of an email, for the communication page's sandboxed frame; 404
    for a communication the user may not see, or one whose content is not HTML."""
    found = await by_path_id(conn, communication_id, communication_detail)
    if found is None:
        return not_found(request, viewer, csrf_token, "communication")
    row = found.communication
    if not shown_as_html(row["channel"], row["content"]):
        return not_found(request, viewer, csrf_token, "communication")
    return HTMLResponse(row["content"], headers=EMAIL_CONTENT_HEADERS)
