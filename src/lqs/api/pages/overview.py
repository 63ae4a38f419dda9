"""``/app/``: the overview. Today's figures, then three charts over the last 30 days:
leads by outcome per day, the funnel received -> qualified -> contacted -> delivered, and
the delivery rate by provider.

The figures are the statistics ``GET /v1/stats`` reports (:mod:`lqs.db.tenant_stats`, run
as the user). Each chart is a ``<canvas data-chart='{json}'>`` (``static/charts.js``) with
its numbers also in a visually hidden table, for screen readers and for browsers that draw
no charts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from lqs.api.pages.layout import PAGES_PREFIX, render
from lqs.api.pages.signed_in import PageCsrfToken, PageSession, PageViewer, SignInRequired
from lqs.api.tenant_admin import DEFAULT_RANGE
from lqs.db.tenant_reads import TenantLeadFilter, leads_page
from lqs.db.tenant_stats import (
    DeliveryCounts,
    OutcomeCount,
    delivery_counts,
    lead_funnel,
    leads_by_outcome,
)
from lqs.db.users import own_profile
from lqs.domain.vocabulary import LeadStatus

router = APIRouter(prefix=PAGES_PREFIX, include_in_schema=False)

NO_PROVIDER = "none yet"
"""How the delivery chart names communications no provider was tried for."""


@dataclass(frozen=True)
class Figure:
    label: str
    value: int


@dataclass(frozen=True)
class Chart:
    """A chart: its Chart.js configuration (JSON), its summary (``aria-label``) and the
    same numbers as a table (``columns``, then one row per label)."""

    id: str
    title: str
    summary: str
    config: str
    columns: list[str]
    rows: list[list[str]]


def _chart(
    id: str, title: str, summary: str, config: dict[str, Any], columns: list[str], rows: list[Any]
) -> Chart:
    return Chart(id, title, summary, json.dumps(config, separators=(",", ":")), columns, rows)


def _outcome_chart(outcomes: list[OutcomeCount], since: datetime, until: datetime) -> Chart:
    days: list[datetime] = []
    day = since.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    while day < until:
        days.append(day)
        day += timedelta(days=1)
    counts = {(row.bucket_start, row.status): row.leads for row in outcomes}
    shown = [str(s) for s in LeadStatus if any(status == s for _, status in counts)]
    series = {status: [counts.get((d, status), 0) for d in days] for status in shown}
    labels = [d.strftime("%d %b") for d in days]
    by_status = ", ".join(f"{sum(n)} {status}" for status, n in series.items()) or "none"
    return _chart(
        "outcomes",
        "Leads by outcome, per day",
        f"Leads received per day over the last 30 days: {sum(counts.values())} in all"
        f" ({by_status}).",
        {
            "type": "bar",
            "data": {
                "labels": labels,
                "datasets": [{"label": status, "data": n} for status, n in series.items()],
            },
            "options": {
                "responsive": True,
                "scales": {"x": {"stacked": True}, "y": {"stacked": True, "beginAtZero": True}},
            },
        },
        ["Day", *shown],
        [[label, *[str(n[i]) for n in series.values()]] for i, label in enumerate(labels)],
    )


def _funnel_chart(stages: list[Figure]) -> Chart:
    summary = ", ".join(f"{s.value} {s.label.lower()}" for s in stages)
    return _chart(
        "funnel",
        "Funnel",
        f"Of the leads received in the last 30 days: {summary}.",
        {
            "type": "bar",
            "data": {
                "labels": [s.label for s in stages],
                "datasets": [{"label": "Leads", "data": [s.value for s in stages]}],
            },
            "options": {"responsive": True, "scales": {"y": {"beginAtZero": True}}},
        },
        ["Stage", "Leads"],
        [[s.label, str(s.value)] for s in stages],
    )


def _percent(part: int, whole: int) -> float:
    return round(100 * part / whole, 1) if whole else 0.0


def _delivery_chart(by_provider: list[DeliveryCounts]) -> Chart:
    names = [c.key or NO_PROVIDER for c in by_provider]
    rates = [_percent(c.delivered, c.attempted) for c in by_provider]
    summary = ", ".join(f"{n} {r}%" for n, r in zip(names, rates, strict=True)) or "no messages"
    return _chart(
        "delivery",
        "Delivery rate by provider",
        f"Share of the messages sent in the last 30 days that were delivered: {summary}.",
        {
            "type": "bar",
            "data": {
                "labels": names,
                "datasets": [{"label": "Delivered (%)", "data": rates}],
            },
            "options": {"responsive": True, "scales": {"y": {"beginAtZero": True, "max": 100}}},
        },
        ["Provider", "Delivered", "Sent", "Rate"],
        [
            [n, str(c.delivered), str(c.attempted), f"{r}%"]
            for n, c, r in zip(names, by_provider, rates, strict=True)
        ],
    )


@router.get("/", response_class=HTMLResponse)
async def overview(
    request: Request, conn: PageSession, viewer: PageViewer, csrf_token: PageCsrfToken
) -> HTMLResponse:
    profile = await own_profile(conn)
    if profile is None:  # PageViewer has just read it: removed since
        raise SignInRequired(clear=True)
    client = profile.client_id
    now = datetime.now(UTC)
    any_lead = await leads_page(conn, TenantLeadFilter(client_id=client), limit=1)
    if not any_lead.rows:
        return render(
            request,
            "overview.html",
            title="Overview",
            viewer=viewer,
            csrf_token=csrf_token,
            empty=True,
            slug=profile.client_slug,
            today=[],
            charts_shown=[],
        )
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    today_leads = await lead_funnel(conn, client, midnight, now)
    today_messages = (await delivery_counts(conn, client, midnight, now))["type"]
    since = now - DEFAULT_RANGE
    outcomes = await leads_by_outcome(conn, client, since, now, "day")
    funnel = await lead_funnel(conn, client, since, now)
    by_provider = (await delivery_counts(conn, client, since, now))["provider"]
    today = [
        Figure("Leads received", today_leads.received),
        Figure("Qualified", today_leads.qualified),
        Figure("Messages sent", sum(c.attempted - c.failed for c in today_messages)),
        Figure("Delivered", sum(c.delivered for c in today_messages)),
    ]
    stages = [
        Figure("Received", funnel.received),
        Figure("Qualified", funnel.qualified),
        Figure("Contacted", funnel.contacted),
        Figure("Delivered", funnel.delivered),
    ]
    return render(
        request,
        "overview.html",
        title="Overview",
        viewer=viewer,
        csrf_token=csrf_token,
        charts=True,
        empty=False,
        slug=profile.client_slug,
        today=today,
        charts_shown=[
            _outcome_chart(outcomes, since, now),
            _funnel_chart(stages),
            _delivery_chart(by_provider),
        ],
    )
