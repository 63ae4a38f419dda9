"""The reading pages in Chromium, as a user of client A who signs in through the form:
the overview's charts drawn, the leads filtered, a lead and its email opened (sandboxed),
client B's lead refused with the 404 page, and signing out.

The tests share one browser and one seeded database and run in order: the first signs
in, the last signs out.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest

from lqs.api.browser_session import SESSION_COOKIE
from lqs.api.tokens import TokenVerifier
from tests.browser.conftest import build_app, console_errors, serving, wait_until
from tests.dashboard_seed import PASSWORD, TRACKER, SeededClient, seed_client

"""Seconds a condition in the browser may take to become true."""


@dataclass(frozen=True)
class Site:
    url: str
    a: SeededClient
    b: SeededClient


async def _seed(url: str) -> tuple[SeededClient, SeededClient]:
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        return await seed_client(conn, "Alpha"), await seed_client(conn, "Beta")


STYLED = (
    '<style>#styled { font-weight: 700 }</style><p id="styled" style="color: #0c2238">Styled</p>'
)
"""Inline styles, which the email's frame applies."""


def remote_image(base_url: str) -> str:
    """An image that loads, from another origin than the pages' (localhost, not 127.0.0.1)."""
    return base_url.replace("127.0.0.1", "localhost") + "/app/static/favicon.svg"


async def _show_remote_image(url: str, communication: UUID, image: str) -> None:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await conn.execute(
            "UPDATE public.communications SET content = replace(content, %s, %s) || %s"
            " WHERE id = %s",
            (TRACKER, image, STYLED, communication),
        )


@pytest.fixture(scope="module")
def site(migrated_db: str) -> Iterator[Site]:
    a, b = asyncio.run(_seed(migrated_db))
    app = build_app(migrated_db, tokens=TokenVerifier(secret=secrets.token_urlsafe(32)))
    with serving(app) as base_url:
        asyncio.run(_show_remote_image(migrated_db, a.email_communication, remote_image(base_url)))
        yield Site(base_url, a, b)


def by_css(browser: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, selector)


def all_css(browser: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(browser.find_elements(By.CSS_SELECTOR, selector))


def sign_in(browser: Any, site: Site) -> None:
    browser.get(f"{site.url}/app/login")
    by_css(browser, "#email").send_keys(site.a.email)
    by_css(browser, "#password").send_keys(PASSWORD)
    by_css(browser, "form.form button[type=submit]").click()
    wait_until(browser, lambda b: b.current_url == f"{site.url}/app/")


@pytest.fixture
def page(browser: Any, site: Site) -> Any:
    """The browser signed in as A's user (through the form, when it is not yet), its
    console emptied."""
    if browser.get_cookie(SESSION_COOKIE) is None or site.url not in browser.current_url:
        browser.delete_all_cookies()
        sign_in(browser, site)
    console_errors(browser)
    return browser


def test_signing_in_opens_the_overview_with_its_charts_drawn(page: Any, site: Site) -> None:
    page.get(f"{site.url}/app/")

    assert by_css(page, "h1").text == "Overview"
    assert by_css(page, "header .client").text == "Alpha"
    canvases = all_css(page, "canvas[data-chart]")
    assert len(canvases) == 3
    drawn = wait_until(
        page,
        lambda b: b.execute_script(
            "var cs = document.querySelectorAll('canvas[data-chart]');"
            "return Array.prototype.every.call(cs, function (c) {"
            "  return c.dataset.chartDrawn === 'true' && Chart.getChart(c) !== undefined"
            "    && c.width > 0 && c.height > 0; })"
        ),
    )
    assert drawn is True
    assert all(c.get_attribute("aria-label") for c in canvases)
    assert console_errors(page) == []


def test_filtering_leads_by_status_changes_the_table(page: Any, site: Site) -> None:
    from selenium.webdriver.support.ui import Select

    page.get(f"{site.url}/app/leads")
    assert len(all_css(page, "#leads-table tbody tr")) == 5

    page.execute_script("window.stillThisPage = true")

    Select(by_css(page, "#f-status")).select_by_value("qualified")
    by_css(page, "form.filters button[type=submit]").click()

    wait_until(page, lambda b: len(all_css(b, "#leads-table tbody tr")) == 2)
    assert page.execute_script("return window.stillThisPage") is True  # htmx swapped the table
    names = [row.text for row in all_css(page, "#leads-table tbody th")]
    assert names == ["Ann Lee", "Dee Park"]
    assert "status=qualified" in page.current_url  # the filter is in the URL
    assert console_errors(page) == []


def test_a_lead_then_its_email_shown_sandboxed(page: Any, site: Site) -> None:
    page.get(f"{site.url}/app/leads")
    by_css(page, f'a[href="/app/leads/{site.a.leads[0]}"]').click()
    wait_until(page, lambda b: by_css(b, "h1").text == "Ann Lee")
    assert len(all_css(page, "#breakdown tbody tr")) == 2

    by_css(
        page, f'#lead-communications a[href="/app/communications/{site.a.email_communication}"]'
    ).click()

    wait_until(page, lambda b: by_css(b, "h1").text == "New qualified lead: Ann Lee")
    frame = by_css(page, "iframe#content")
    assert frame.get_attribute("sandbox") == ""
    assert page.title.endswith("· LQS")  # the email's script did not run
    page.switch_to.frame(frame)
    try:
        assert by_css(page, "h1").text == "New qualified lead"
        remote = by_css(page, "img#remote")
        assert remote.get_attribute("src") == remote_image(site.url)
        # The image is there (below), but the frame's img-src refuses another origin.
        assert page.execute_script("return arguments[0].naturalWidth", remote) == 0
        styled = by_css(page, "#styled")
        style = "const s = getComputedStyle(arguments[0]); return [s.color, s.fontWeight]"
        assert page.execute_script(style, styled) == ["rgb(12, 34, 56)", "700"]
    finally:
        page.switch_to.default_content()
    assert httpx.get(remote_image(site.url)).status_code == 200
    by_css(page, "#lead-link").click()
    wait_until(page, lambda b: by_css(b, "h1").text == "Ann Lee")


def test_another_clients_lead_in_the_url_is_the_404_page(page: Any, site: Site) -> None:
    page.get(f"{site.url}/app/leads/{site.b.leads[0]}")

    assert by_css(page, "h1").text == "Not found"
    assert page.title == "Not found · LQS"
    assert "Ann Lee" not in page.page_source


def test_signing_out_returns_to_sign_in_and_pages_then_redirect(page: Any, site: Site) -> None:
    page.get(f"{site.url}/app/")

    by_css(page, ".viewer form button[type=submit]").click()

    wait_until(page, lambda b: b.current_url == f"{site.url}/app/login")
    assert page.get_cookie(SESSION_COOKIE) is None
    page.get(f"{site.url}/app/")
    assert page.current_url == f"{site.url}/app/login"
    assert by_css(page, "h1").text == "Sign in"
