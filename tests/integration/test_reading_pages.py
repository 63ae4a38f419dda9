"""The dashboard's reading pages in process, on a real database: the overview, the leads
and the communications, each as a signed-in user of client A sees them (row-level
security decides), with B's ids answered by the 404 page and every filter in the URL."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html import unescape
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg
import pytest

from lqs.api.app import create_app
from lqs.api.browser_session import SESSION_COOKIE
from lqs.api.pages.layout import CONTENT_SECURITY_POLICY
from lqs.api.tokens import TokenVerifier
from tests.configs import api_config
from tests.dashboard_seed import EMAIL_CONTENT, SeededClient, seed_client
from tests.integration.test_page_sign_in import serving

pytestmark = pytest.mark.asyncio(loop_scope="module")

SECRET = secrets.token_urlsafe(32)


@dataclass(frozen=True)
class World:
    a: SeededClient
    b: SeededClient
    empty: SeededClient
    http: httpx.AsyncClient
    tokens: TokenVerifier

    def as_user(self, who: SeededClient) -> dict[str, str]:
        token, _ = self.tokens.issue(who.user_id)
        return {"cookie": f"{SESSION_COOKIE}={token}"}


@pytest.fixture(scope="module")
async def world(migrated_db: str) -> AsyncIterator[World]:
    async with await psycopg.AsyncConnection.connect(migrated_db) as conn, conn.transaction():
        a = await seed_client(conn, "Alpha")
        b = await seed_client(conn, "Beta")
        empty = await seed_client(conn, "Empty", leads=False)
    tokens = TokenVerifier(secret=SECRET)
    app = create_app(migrated_db, api_config(tokens=tokens, pool_max_size=2))
    async with serving(app) as http:
        yield World(a, b, empty, http, tokens)


async def get_as(world: World, who: SeededClient, path: str) -> httpx.Response:
    return await world.http.get(path, headers=world.as_user(who))


def names_listed(html: str) -> list[str]:
    """The names in the listing's first column of row headers, in order."""
    return [unescape(n) for n in re.findall(r'<th scope="row"><a href="[^"]+">([^<]+)</a>', html)]


def h1s(html: str) -> list[str]:
    return re.findall(r"<h1>([^<]*)</h1>", html)


# ---------------------------------------------------------------- overview


async def test_overview_shows_todays_figures_and_three_charts(world: World) -> None:
    response = await get_as(world, world.a, "/app/")

    assert response.status_code == 200
    html = response.text
    assert h1s(html) == ["Overview"]
    assert html.count("data-chart=") == 3
    assert "chart.umd.min.js" in html  # the page loads Chart.js and charts.js
    figures = dict(re.findall(r"<dt>([^<]+)</dt><dd>(\d+)</dd>", html))
    assert figures["Leads received"] == "5"
    assert figures["Qualified"] == "2"
    assert figures["Messages sent"] == "1"  # the failed text message was not sent
    assert figures["Delivered"] == "1"


async def test_every_chart_has_a_summary_and_a_table_of_its_numbers(world: World) -> None:
    html = (await get_as(world, world.a, "/app/")).text

    labels = re.findall(r'<canvas role="img" aria-label="([^"]+)"', html)
    assert len(labels) == 3
    assert "5 in all" in labels[0]
    assert "5 received, 2 qualified, 2 contacted, 1 delivered" in unescape(labels[1])
    assert "resend 100.0%" in labels[2]
    assert "twilio 0.0%" in labels[2]
    assert html.count('<table class="visually-hidden">') == 3
    assert '<th scope="row">Contacted</th><td>2</td>' in html


async def test_overview_counts_only_the_users_client(world: World) -> None:
    html = (await get_as(world, world.b, "/app/")).text

    assert re.search(r"<dt>Leads received</dt><dd>5</dd>", html)
    assert "Beta" in html
    assert "Alpha" not in html


async def test_overview_without_leads_says_how_to_send_some(world: World) -> None:
    html = (await get_as(world, world.empty, "/app/")).text

    assert "No leads yet" in html
    assert 'href="/app/keys"' in html
    assert f"lqs leads import --client {world.empty.slug} leads.csv" in html
    assert "data-chart=" not in html


async def test_pages_without_a_session_redirect_to_sign_in(world: World) -> None:
    for path in ("/app/", "/app/leads", f"/app/leads/{world.a.leads[0]}", "/app/communications"):
        response = await world.http.get(path)

        assert response.status_code == 303
        assert response.headers["location"] == "/app/login"


# ---------------------------------------------------------------- leads


async def test_leads_lists_the_clients_leads_newest_first(world: World) -> None:
    response = await get_as(world, world.a, "/app/leads")

    assert response.status_code == 200
    assert h1s(response.text) == ["Leads"]
    assert names_listed(response.text) == [
        "Ann Lee",
        "Bob Stone",
        "Cy Young",
        "Dee Park",
        "Eve Moss",
    ]
    assert f"/app/leads/{world.b.leads[0]}" not in response.text


async def test_leads_filter_by_status_from_the_url(world: World) -> None:
    html = (await get_as(world, world.a, "/app/leads?status=qualified")).text

    assert names_listed(html) == ["Ann Lee", "Dee Park"]
    assert '<option value="qualified" selected>' in html  # the form shows the filter


async def test_leads_filters_combine_and_sort_by_score(world: World) -> None:
    html = (await get_as(world, world.a, "/app/leads?min_score=40&sort=score&q=")).text

    assert names_listed(html) == ["Ann Lee", "Dee Park", "Bob Stone"]


async def test_leads_pages_carry_the_filters_and_the_cursor(world: World) -> None:
    first = (await get_as(world, world.a, "/app/leads?source=website&limit=2")).text
    assert names_listed(first) == ["Ann Lee", "Bob Stone"]
    assert "First page" not in first
    next_url = unescape(re.search(r'<a href="([^"]+)" rel="next">Next page</a>', first).group(1))
    query = parse_qs(urlsplit(next_url).query)
    assert query["source"] == ["website"]
    assert query["limit"] == ["2"]
    assert query["cursor"]

    second = (await get_as(world, world.a, next_url)).text

    assert names_listed(second) == ["Cy Young", "Dee Park"]
    first_url = unescape(re.search(r'<a href="([^"]+)">First page</a>', second).group(1))
    assert parse_qs(urlsplit(first_url).query) == {"source": ["website"], "limit": ["2"]}


async def test_a_bad_filter_shows_a_message_next_to_the_form(world: World) -> None:
    response = await get_as(world, world.a, "/app/leads?min_score=lots")

    assert response.status_code == 400
    assert 'role="alert" id="filter-error"' in response.text
    assert "min_score" in response.text
    assert '<form class="filters"' in response.text
    assert 'value="lots"' in response.text  # what was typed is kept


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("status=lost", "status"),
        ("min_score=50&max_score=10", "min_score: is after max_score"),
        ("received_from=2026-12-01", "received_from"),
        ("cursor=not-a-cursor", "cursor"),
        ("limit=0", "limit"),
        ("limit=%C2%B2", "limit"),  # a digit to str.isdigit(), not to int()
        ("limit=" + "9" * 5000, "limit"),  # past int()'s 4,300 digits
        ("sort=name", "sort"),
        ("q=%00", "q: contains"),
    ],
)
async def test_each_refused_filter_is_named_on_the_page(
    world: World, query: str, named: str
) -> None:
    response = await get_as(world, world.a, f"/app/leads?{query}")

    assert response.status_code == 400
    assert named in unescape(response.text)
    assert names_listed(response.text) == []


async def test_an_htmx_request_with_a_bad_filter_is_swapped_in(world: World) -> None:
    headers = {**world.as_user(world.a), "HX-Request": "true"}
    response = await world.http.get("/app/leads?min_score=lots", headers=headers)

    assert response.status_code == 200  # htmx swaps only successful answers
    assert 'id="filter-error"' in response.text


async def test_no_matching_lead_says_so(world: World) -> None:
    html = (await get_as(world, world.a, "/app/leads?q=nobody-like-this")).text

    assert 'id="leads-empty"' in html
    assert "No lead matches these filters" in html


async def test_a_lead_page_shows_its_score_breakdown_communications_and_timeline(
    world: World,
) -> None:
    response = await get_as(world, world.a, f"/app/leads/{world.a.leads[0]}")

    assert response.status_code == 200
    html = response.text
    assert h1s(html) == ["Ann Lee"]
    assert "80 (grade A)" in html
    assert '<th scope="row">work_email</th><td class="number">50</td>' in html
    assert f'href="/app/communications/{world.a.email_communication}"' in html
    assert "received from website" in html
    assert "scored 80 (A): qualified" in html


@pytest.mark.parametrize("which", ["b_lead", "garbage", "unknown"])
async def test_another_clients_lead_or_garbage_is_a_404_page(world: World, which: str) -> None:
    lead_id = {
        "b_lead": str(world.b.leads[0]),
        "garbage": "'; DROP TABLE leads; --",
        "unknown": "00000000-0000-4000-8000-00000000dead",
    }[which]

    response = await get_as(world, world.a, f"/app/leads/{lead_id}")

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert h1s(response.text) == ["Not found"]
    assert "Ann Lee" not in response.text


# ---------------------------------------------------------------- communications


async def test_communications_list_and_filter_by_channel(world: World) -> None:
    every = (await get_as(world, world.a, "/app/communications")).text
    sms = (await get_as(world, world.a, "/app/communications?type=sms")).text

    assert names_listed(every) == ["(sms message)", "New qualified lead: Ann Lee"]
    assert names_listed(sms) == ["(sms message)"]
    assert '<option value="sms" selected>' in sms
    assert "number unreachable" in sms


async def test_a_bad_communication_filter_shows_a_message(world: World) -> None:
    response = await get_as(world, world.a, "/app/communications?type=pigeon")

    assert response.status_code == 400
    assert "type" in response.text
    assert 'id="filter-error"' in response.text


@pytest.mark.parametrize("limit", ["%C2%B2", "9" * 5000])
async def test_a_communications_limit_int_cannot_read_is_refused_on_the_page(
    world: World, limit: str
) -> None:
    response = await get_as(world, world.a, f"/app/communications?limit={limit}")

    assert response.status_code == 400
    assert "limit: must be a whole number" in unescape(response.text)
    assert 'id="filter-error"' in response.text


async def test_no_communications_yet_says_where_they_come_from(world: World) -> None:
    html = (await get_as(world, world.empty, "/app/communications")).text

    assert 'id="communications-empty"' in html
    assert "No communications yet" in html


async def test_an_html_email_is_shown_in_a_sandboxed_frame(world: World) -> None:
    page = f"/app/communications/{world.a.email_communication}"
    response = await get_as(world, world.a, page)

    assert response.status_code == 200
    html = response.text
    frame = re.search(r"<iframe [^>]*>", html).group(0)
    assert ' sandbox="" ' in frame
    assert "allow-scripts" not in frame
    assert "allow-same-origin" not in frame
    assert f' src="{page}/content"' in frame
    assert "New qualified lead</h1>" not in html  # the email is not markup of the page
    assert f'href="/app/leads/{world.a.leads[0]}"' in html
    assert "98.5" in html  # the attempt's latency
    assert "email.delivered" in html


async def test_the_pages_policy_frames_this_origin_only(world: World) -> None:
    response = await get_as(world, world.a, f"/app/communications/{world.a.email_communication}")

    policy = response.headers["content-security-policy"]
    assert policy == CONTENT_SECURITY_POLICY
    assert "frame-src 'self'" in policy.split("; ")
    assert response.headers["x-frame-options"] == "DENY"


async def test_an_emails_content_is_served_sandboxed_with_its_styles_and_no_remote_image(
    world: World,
) -> None:
    response = await get_as(
        world, world.a, f"/app/communications/{world.a.email_communication}/content"
    )

    assert response.status_code == 200
    assert response.text == EMAIL_CONTENT
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = response.headers["content-security-policy"].split("; ")
    assert "sandbox" in policy  # scripts off, an opaque origin, even opened on its own
    assert "default-src 'none'" in policy
    assert "style-src 'unsafe-inline'" in policy
    assert "img-src data:" in policy  # the tracker does not load
    assert not [d for d in policy if d.startswith("script-src")]
    assert "frame-ancestors 'self'" in policy
    assert response.headers["x-frame-options"] == "SAMEORIGIN"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("which", ["b_email", "own_sms", "garbage"])
async def test_content_that_is_not_an_email_of_the_users_is_a_404(world: World, which: str) -> None:
    communication_id = {
        "b_email": str(world.b.email_communication),
        "own_sms": str(world.a.sms_communication),
        "garbage": "x",
    }[which]

    response = await get_as(world, world.a, f"/app/communications/{communication_id}/content")

    assert response.status_code == 404
    assert "Ann Lee" not in response.text
    assert "New qualified lead" not in response.text


async def test_text_content_is_shown_as_text(world: World) -> None:
    html = (await get_as(world, world.a, f"/app/communications/{world.a.sms_communication}")).text

    assert '<pre id="content" class="content-text">New lead: Dee Park (B)</pre>' in html
    assert "<iframe" not in html
    assert "number unreachable" in html


@pytest.mark.parametrize("which", ["b_communication", "garbage"])
async def test_another_clients_communication_is_a_404_page(world: World, which: str) -> None:
    communication_id = str(world.b.email_communication) if which == "b_communication" else "x"

    response = await get_as(world, world.a, f"/app/communications/{communication_id}")

    assert response.status_code == 404
    assert h1s(response.text) == ["Not found"]


# ---------------------------------------------------------------- accessibility


@pytest.mark.parametrize("page", ["/app/", "/app/leads", "/app/communications", "lead", "mail"])
async def test_every_page_has_one_h1_and_labelled_controls(world: World, page: str) -> None:
    path = {
        "lead": f"/app/leads/{world.a.leads[0]}",
        "mail": f"/app/communications/{world.a.email_communication}",
    }.get(page, page)

    html = (await get_as(world, world.a, path)).text

    assert len(h1s(html)) == 1
    for control in re.findall(r"<(?:input|select)\b[^>]*>", html):
        if 'type="hidden"' in control:
            continue
        control_id = re.search(r'id="([^"]+)"', control).group(1)
        assert f'<label for="{control_id}">' in html
    for table in re.findall(r"<table\b.*?</table>", html, re.S):
        assert "<caption>" in table
        assert '<th scope="col"' in table
