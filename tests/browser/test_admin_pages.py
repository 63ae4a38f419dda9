"""The suppressions and admin pages in Chromium, for an admin and a member of one client who
sign in through the form: a dead letter retried (htmx swaps its row), a key created and
shown once, a suppression removed; the member sees no admin link and gets the 403 page.
No page logs a console error.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from lqs.api.tokens import TokenVerifier
from lqs.db.clients import create_client
from lqs.db.users import add_user
from lqs.domain.passwords import hash_password
from tests.browser.conftest import build_app, console_errors, serving, wait_until

"""Seconds a condition in the browser may take to become true."""
PASSWORD = "a-long-enough-browser-password"


@dataclass(frozen=True)
class Site:
    url: str
    database: str
    client: UUID
    admin_email: str
    member_email: str


async def _seed(url: str) -> tuple[UUID, str, str]:
    slug = f"adm-{uuid4().hex[:10]}"
    admin, member = f"root@{slug}.example", f"ada@{slug}.example"
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        client = await create_client(conn, "Acme Admin", slug, {})
        await add_user(conn, client.id, admin, hash_password(PASSWORD), "admin")
        await add_user(conn, client.id, member, hash_password(PASSWORD), "member")
    return client.id, admin, member


async def _insert(url: str, query: str, *params: Any) -> UUID:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(query.encode(), params)
        row = await cur.fetchone()
    assert row is not None
    found: UUID = row[0]
    return found


def add_failed_communication(site: Site, recipient: str) -> UUID:
    async def insert() -> UUID:
        lead = await _insert(
            site.database,
            "INSERT INTO public.leads (client_id, email, dedupe_key, status)"
            " VALUES (%s, %s, %s, 'qualified') RETURNING id",
            site.client, recipient, f"email:{recipient}",
        )  # fmt: skip
        return await _insert(
            site.database,
            "INSERT INTO public.communications"
            " (lead_id, client_id, type, recipient, status, content, error_message)"
            " VALUES (%s, %s, 'email', %s, 'failed', 'Hello', 'mailbox full') RETURNING id",
            lead, site.client, recipient,
        )  # fmt: skip

    return asyncio.run(insert())


def add_suppression(site: Site, recipient: str) -> UUID:
    query = (
        "INSERT INTO public.suppressions (client_id, channel, recipient, reason)"
        " VALUES (%s, 'email', %s, 'complaint') RETURNING id"
    )
    return asyncio.run(_insert(site.database, query, site.client, recipient))


@pytest.fixture(scope="module")
def site(migrated_db: str) -> Iterator[Site]:
    client, admin, member = asyncio.run(_seed(migrated_db))
    app = build_app(migrated_db, tokens=TokenVerifier(secret=secrets.token_urlsafe(32)))
    with serving(app) as base_url:
        yield Site(base_url, migrated_db, client, admin, member)


def by_css(browser: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, selector)


def all_css(browser: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(browser.find_elements(By.CSS_SELECTOR, selector))


def sign_in(browser: Any, site: Site, email: str) -> None:
    """Sign in through the form as ``email``; the console emptied afterwards (the overview
    the form goes to is not part of these pages)."""
    browser.delete_all_cookies()
    browser.get(f"{site.url}/app/login")
    by_css(browser, "#email").send_keys(email)
    by_css(browser, "#password").send_keys(PASSWORD)
    by_css(browser, "form button[type=submit]").click()
    wait_until(browser, lambda b: not b.current_url.endswith("/app/login"))
    console_errors(browser)


def nav_labels(browser: Any) -> list[str]:
    return [link.text for link in all_css(browser, "nav[aria-label=Main] a")]


@pytest.fixture
def admin(browser: Any, site: Site) -> Any:
    sign_in(browser, site, site.admin_email)
    return browser


@pytest.fixture
def member(browser: Any, site: Site) -> Any:
    sign_in(browser, site, site.member_email)
    return browser


def test_an_admin_retries_a_dead_letter_and_its_row_shows_it_queued(admin: Any, site: Site) -> None:
    communication = add_failed_communication(site, f"{uuid4().hex[:8]}@lead.example")
    admin.get(f"{site.url}/app/dead-letters")
    row = f"#communication-{communication}"
    assert "mailbox full" in by_css(admin, row).text

    by_css(admin, f"{row} button").click()

    wait_until(admin, lambda b: "Queued again" in by_css(b, row).text)
    assert "pending" in by_css(admin, row).text
    assert all_css(admin, f"{row} button") == []
    assert admin.current_url.endswith("/app/dead-letters")  # swapped in place, no reload
    assert console_errors(admin) == []


def test_an_admin_creates_a_key_and_sees_it_only_once(admin: Any, site: Site) -> None:
    admin.get(f"{site.url}/app/keys")
    by_css(admin, "#key-name").send_keys("website form")

    by_css(admin, "form[action='/app/keys'] button[type=submit]").click()

    wait_until(admin, lambda b: b.title == "API key created · LQS")
    key = by_css(admin, "#new-key").get_attribute("value")
    assert key.startswith("lqs_")
    assert by_css(admin, "#new-key").get_attribute("readonly") is not None
    admin.get(f"{site.url}/app/keys")
    assert "website form" in by_css(admin, "#keys").text
    assert key not in admin.page_source
    assert key[:12] in admin.page_source  # the prefix alone
    assert console_errors(admin) == []


def test_an_admin_revokes_a_key_after_confirming(admin: Any, site: Site) -> None:
    admin.get(f"{site.url}/app/keys")
    by_css(admin, "#key-name").send_keys("to revoke")
    by_css(admin, "form[action='/app/keys'] button[type=submit]").click()
    wait_until(admin, lambda b: b.title == "API key created · LQS")
    admin.get(f"{site.url}/app/keys")

    by_css(admin, "a[aria-label^='Revoke the key to revoke']").click()
    wait_until(admin, lambda b: b.title == "Revoke an API key · LQS")
    by_css(admin, "button.danger").click()

    wait_until(admin, lambda b: "was revoked" in by_css(b, "main").text)
    assert all_css(admin, "a[aria-label^='Revoke the key to revoke']") == []
    assert console_errors(admin) == []


def test_an_admin_removes_a_suppression(admin: Any, site: Site) -> None:
    recipient = f"{uuid4().hex[:8]}@gone.example"
    add_suppression(site, recipient)
    admin.get(f"{site.url}/app/suppressions")
    assert recipient in by_css(admin, "main").text

    by_css(admin, f"button[aria-label^='Remove the suppression of {recipient}']").click()

    wait_until(admin, lambda b: "The suppression was removed" in by_css(b, "main").text)
    assert recipient not in by_css(admin, "main").text
    assert console_errors(admin) == []


def test_a_member_sees_no_admin_links_and_gets_403_on_dead_letters(member: Any, site: Site) -> None:
    recipient = f"{uuid4().hex[:8]}@kept.example"
    add_suppression(site, recipient)
    member.get(f"{site.url}/app/suppressions")

    assert recipient in by_css(member, "main").text
    assert all_css(member, "main button") == []  # no "Remove"
    assert "Dead letters" not in nav_labels(member)
    assert "API keys" not in nav_labels(member)
    assert "Rules tester" in nav_labels(member)
    assert console_errors(member) == []

    member.get(f"{site.url}/app/dead-letters")
    assert by_css(member, "h1").text == "Not allowed"
    # The 403 itself is the one console line: Chromium reports a page's error status.
    assert all("403" in line for line in console_errors(member))


def test_a_member_scores_a_lead_in_the_rules_tester(member: Any, site: Site) -> None:
    member.get(f"{site.url}/app/rules-test")
    by_css(member, "#lead-email").send_keys("ann@acme.example")
    by_css(member, "#lead-job_title").send_keys("CTO")
    by_css(member, "#lead-country").send_keys("ZZZ")

    by_css(member, "form[action='/app/rules-test'] button[type=submit]").click()
    wait_until(member, lambda b: all_css(b, "#lead-country-error"))
    assert by_css(member, "#lead-country").get_attribute("aria-invalid") == "true"
    console_errors(member)  # the 422 answer's status line
    country = by_css(member, "#lead-country")
    country.clear()
    country.send_keys("US")
    by_css(member, "form[action='/app/rules-test'] button[type=submit]").click()

    wait_until(member, lambda b: all_css(b, "#result-score"))
    assert by_css(member, "#result-score").text.isdigit()
    assert all_css(member, "#lead-country-error") == []
    assert console_errors(member) == []
