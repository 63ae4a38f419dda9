"""``/app/rules-test``: score a lead typed into a form under the client's current rules,
as ``POST /v1/rules/test`` does (:func:`lqs.api.tenant_actions.try_rules`); nothing is
stored. Any user of the client may use it, as the API allows: it writes nothing, and a
member already sees every lead's score and breakdown. Bad input shows each problem next
to its field."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from lqs.api import tenant_actions
from lqs.api.deps import Csrf
from lqs.api.errors import ApiError
from lqs.api.pages.actions import field_errors, page_profile, posted_form, refused
from lqs.api.pages.layout import PAGES_PREFIX, Viewer, render
from lqs.api.pages.signed_in import PageCsrfToken, PageSession, PageUser

router = APIRouter(prefix=PAGES_PREFIX, include_in_schema=False)

FORM_FIELDS: tuple[tuple[str, str, str], ...] = (
    # (the lead's field, its label, the input's type)
    ("email", "Email", "email"),
    ("first_name", "First name", "text"),
    ("last_name", "Last name", "text"),
    ("company_name", "Company", "text"),
    ("company_domain", "Company domain", "text"),
    ("job_title", "Job title", "text"),
    ("company_size", "Company size", "text"),
    ("industry", "Industry", "text"),
    ("phone", "Phone", "tel"),
    ("country", "Country (ISO code, e.g. GB)", "text"),
    ("source", "Source", "text"),
    ("utm_campaign", "Campaign (utm_campaign)", "text"),
)
"""The lead fields the form asks for, in order: those rules usually score."""


def _page(
    request: Request,
    token: str,
    viewer: Viewer,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    tested: tenant_actions.RulesTest | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "rules_test.html",
        title="Rules tester",
        viewer=viewer,
        csrf_token=token,
        status_code=status_code,
        fields=FORM_FIELDS,
        values=values or {},
        errors=errors or {},
        tested=tested,
    )


@router.get("/rules-test")
async def rules_test_form(
    request: Request, token: PageCsrfToken, user: PageUser, conn: PageSession
) -> Response:
    _, viewer = await page_profile(conn, user)
    return _page(request, token, viewer)


@router.post("/rules-test")
async def rules_test(
    request: Request, csrf: Csrf, token: PageCsrfToken, user: PageUser, conn: PageSession
) -> Response:
    profile, viewer = await page_profile(conn, user)
    try:
        form = await posted_form(request, csrf)
    except ApiError as exc:
        return refused(request, viewer, token, exc)
    values = {name: form.get(name, "").strip() for name, _, _ in FORM_FIELDS}
    lead = {name: value for name, value in values.items() if value}
    try:
        tested = await tenant_actions.try_rules(conn, profile, lead)
    except ApiError as exc:
        if exc.status != 400:
            return refused(request, viewer, token, exc)
        errors = field_errors(exc)
        if not any(name in errors for name, _, _ in FORM_FIELDS):
            # A problem of the lead as a whole (no email or phone): shown at the top.
            errors["lead"] = exc.message
        return _page(request, token, viewer, values=values, errors=errors, status_code=422)
    return _page(request, token, viewer, values=values, tested=tested)
