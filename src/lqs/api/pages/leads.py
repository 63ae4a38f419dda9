"""``/app/leads``: the client's leads, filtered as ``GET /v1/leads`` filters them (every
filter in the URL), a page at a time; ``/app/leads/{id}``: one lead with its score's
breakdown, its communications, its consent history and its timeline.

What is shown is what row-level security lets the user read: another client's lead is
answered as an unknown one, with the 404 page.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from lqs.api.errors import ApiError
from lqs.api.pages.layout import PAGES_PREFIX, render
from lqs.api.pages.listings import by_path_id, filtered_listing, not_found, page_size
from lqs.api.pages.signed_in import PageCsrfToken, PageSession, PageViewer
from lqs.api.read_filters import LeadQuery, lead_filter, page_cursor, parse_query
from lqs.db.tenant_reads import LeadListing, LeadSort, Page, lead_detail, leads_page
from lqs.domain.vocabulary import LeadStatus

router = APIRouter(prefix=PAGES_PREFIX, include_in_schema=False)

LEADS_PATH = f"{PAGES_PREFIX}/leads"
SORTS: dict[str, LeadSort] = {"received": "received", "score": "score"}


@router.get("/leads", response_class=HTMLResponse)
async def leads(
    request: Request, conn: PageSession, viewer: PageViewer, csrf_token: PageCsrfToken
) -> HTMLResponse:
    async def read(params: Mapping[str, str]) -> Page[LeadListing]:
        sort = SORTS.get(params.get("sort") or "received")
        if sort is None:
            raise ApiError(422, "invalid_parameter", "sort: must be received or score")
        wanted = lead_filter(parse_query(LeadQuery, params))
        after = page_cursor(
            params.get("cursor") or None, sort, datetime if sort == "received" else int
        )
        return await leads_page(
            conn, wanted, sort=sort, limit=page_size(params.get("limit")), after=after
        )

    return await filtered_listing(
        request,
        viewer,
        csrf_token,
        read,
        path=LEADS_PATH,
        template="leads.html",
        title="Leads",
        not_filters=("sort", "limit"),
        statuses=[str(s) for s in LeadStatus],
    )


@router.get("/leads/{lead_id}", response_class=HTMLResponse)
async def lead(
    request: Request,
    conn: PageSession,
    viewer: PageViewer,
    csrf_token: PageCsrfToken,
    lead_id: str,
) -> HTMLResponse:
    found = await by_path_id(conn, lead_id, lead_detail)
    if found is None:
        return not_found(request, viewer, csrf_token, "lead")
    name = " ".join(p for p in (found.lead["first_name"], found.lead["last_name"]) if p)
    return render(
        request,
        "lead.html",
        title=f"Lead {name or found.lead['email'] or found.lead['id']}",
        viewer=viewer,
        csrf_token=csrf_token,
        name=name,
        lead=found.lead,
        breakdown=found.lead["score_breakdown"] or [],
        communications=found.communications,
        consent=found.consent_history,
        timeline=found.timeline,
    )
