"""The dashboard's foundation as a browser sees it: the sign-in page, the layout, the
Content-Security-Policy enforced, the vendored htmx and Chart.js."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from lqs.api.pages.layout import CONTENT_SECURITY_POLICY, Viewer, render, templates
from tests.browser.conftest import build_app, console_errors, serving, wait_until

PROBE = templates.from_string(
    """{% extends "base.html" %}{% block main %}<h1>Probe</h1>
<canvas id="chart" role="img" aria-label="Leads per day"
  data-chart='{"type": "bar", "data": {"labels": ["Mon", "Tue"],
  "datasets": [{"label": "Leads", "data": [3, 5]}]}}'></canvas>
{% endblock %}"""
)
"""A page of the layout with a chart, shown to a member of a client whose name needs escaping."""
MEMBER = Viewer(email="ada@example.com", client_name="Acme <Ltd> & Co", is_admin=False)


def add_probe(app: FastAPI) -> None:
    @app.get("/app/_probe", include_in_schema=False)
    async def probe(request: Request) -> HTMLResponse:
        return render(
            request, PROBE, title="Probe", viewer=MEMBER, charts=True, csrf_token="probe-token"
        )


@pytest.fixture(scope="module")
def site(migrated_db: str) -> Iterator[str]:
    with serving(build_app(migrated_db, add_probe)) as base_url:
        yield base_url


@pytest.fixture
def page(browser: Any, site: str) -> Any:
    """The browser, its console emptied, its cookies cleared."""
    browser.delete_all_cookies()
    console_errors(browser)
    return browser


def by_css(browser: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, selector)


def test_sign_in_page_has_a_form_whose_inputs_are_labelled(page: Any, site: str) -> None:
    page.get(f"{site}/app/login")

    assert page.title == "Sign in · LQS"
    assert by_css(page, "h1").text == "Sign in"
    email, password = by_css(page, "#email"), by_css(page, "#password")
    assert email.accessible_name == "Email"
    assert email.get_attribute("type") == "email"
    assert email.get_attribute("autocomplete") == "username"
    assert password.accessible_name == "Password"
    assert password.get_attribute("type") == "password"
    assert by_css(page, "form button[type=submit]").accessible_name == "Sign in"
    assert by_css(page, "form").get_attribute("action").endswith("/app/login")


def test_sign_in_page_logs_no_console_errors(page: Any, site: str) -> None:
    page.get(f"{site}/app/login")

    assert page.execute_script("return document.readyState") == "complete"
    assert console_errors(page) == []


def test_sign_in_page_has_landmarks_and_a_skip_link_first(page: Any, site: str) -> None:
    from selenium.webdriver.common.keys import Keys

    page.get(f"{site}/app/login")
    by_css(page, "body").send_keys(Keys.TAB)

    focused = page.switch_to.active_element
    assert focused.text == "Skip to main content"
    assert focused.get_attribute("href").endswith("#main")
    assert focused.location["y"] >= 0  # shown on focus, not left off-screen
    outline = page.execute_script("return getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none")
    assert page.execute_script("return document.documentElement.lang") == "en"
    for landmark in ("header", "main#main", "footer"):
        assert by_css(page, landmark).is_displayed()


def test_sign_in_page_is_served_with_a_strict_content_security_policy(site: str) -> None:
    response = httpx.get(f"{site}/app/login")

    assert response.status_code == 200
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert "unsafe-eval" not in CONTENT_SECURITY_POLICY


def test_browser_refuses_an_inline_script_on_a_page(page: Any, site: str) -> None:
    page.get(f"{site}/app/login")

    ran = page.execute_script(
        "var s = document.createElement('script');"
        "s.textContent = 'window.inlineRan = true';"
        "document.body.appendChild(s);"
        "return window.inlineRan === true"
    )

    assert ran is False
    assert any("Content Security Policy" in message for message in console_errors(page))


def test_vendored_htmx_and_chart_js_load_and_draw_a_chart(page: Any, site: str) -> None:
    page.get(f"{site}/app/_probe")

    assert page.execute_script("return typeof htmx") == "object"
    assert page.execute_script("return typeof Chart") == "function"
    drawn = page.execute_script(
        "var c = document.getElementById('chart');"
        "return c.dataset.chartDrawn === 'true' && Chart.getChart(c) !== undefined"
    )
    assert drawn is True
    assert console_errors(page) == []


def test_layout_names_the_client_and_shows_members_no_admin_links(page: Any, site: str) -> None:
    from selenium.webdriver.common.by import By

    page.get(f"{site}/app/_probe")

    assert by_css(page, "header .client").text == "Acme <Ltd> & Co"  # escaped, not markup
    nav = by_css(page, "nav[aria-label=Main]")
    labels = [link.text for link in nav.find_elements(By.TAG_NAME, "a")]
    assert labels == ["Overview", "Leads", "Communications", "Suppressions", "Rules tester"]
    assert by_css(page, "meta[name=csrf-token]").get_attribute("content") == "probe-token"


def test_submitting_the_form_says_sign_in_is_not_configured(page: Any, site: str) -> None:
    page.get(f"{site}/app/login")
    by_css(page, "#email").send_keys("ada@example.com")
    by_css(page, "#password").send_keys("correct horse battery staple")
    by_css(page, "form button[type=submit]").click()

    alert = wait_until(page, lambda b: by_css(b, "[role=alert]"))
    assert "Sign-in is not configured" in alert.text
    assert by_css(page, "#email").get_attribute("value") == "ada@example.com"
    assert by_css(page, "#email").get_attribute("aria-describedby") == "form-error"
    assert by_css(page, "#password").get_attribute("value") == ""
    # The placeholder answers 503 (sign-in unavailable): the browser logs that, nothing else.
    assert [message.split(" - ", 1)[1] for message in console_errors(page)] == [
        "Failed to load resource: the server responded with a status of 503 (Service Unavailable)"
    ]
