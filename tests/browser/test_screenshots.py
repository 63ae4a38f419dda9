"""PNGs of the dashboard's pages: ``make screenshots`` writes them to docs/screenshots
(LQS_SCREENSHOTS_DIR); in the suite they go to a scratch folder, so every page listed
here is checked to load in Chromium without a console error.

A page is added in one line of :data:`SCREENSHOTS`; ``signed_in`` pages are taken as an
admin of a client with a little of everything (:func:`_seed`), who signs in through the form.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from lqs.api.tokens import TokenVerifier
from lqs.db.clients import create_client
from lqs.db.users import add_user
from lqs.domain.passwords import hash_password
from tests.browser.conftest import build_app, console_errors, serving

SCREENSHOTS_VARIABLE = "LQS_SCREENSHOTS_DIR"


@dataclass(frozen=True)
class Screenshot:
    name: str
    """The file's name, without ``.png``."""
    path: str
    signed_in: bool = False
    """Taken as the seeded admin (else with no session)."""


SCREENSHOTS = (
    Screenshot("login", "/app/login"),
    Screenshot("suppressions", "/app/suppressions", signed_in=True),
    Screenshot("dead-letters", "/app/dead-letters", signed_in=True),
    Screenshot("keys", "/app/keys", signed_in=True),
    Screenshot("rules-test", "/app/rules-test", signed_in=True),
)

ADMIN_EMAIL = "owner@acme-screenshots.example"
PASSWORD = "a-long-enough-screenshot-password"


async def _seed(url: str) -> None:
    """A client whose admin signs in, with a suppression, a failed message and a key."""
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        client = await create_client(conn, "Acme Ltd", "acme-screenshots", {})
        await add_user(conn, client.id, ADMIN_EMAIL, hash_password(PASSWORD), "admin")
        await conn.execute(
            "INSERT INTO public.suppressions (client_id, channel, recipient, reason, source)"
            " VALUES (%s, 'email', 'bounced@example.com', 'bounce', 'resend'),"
            " (%s, 'sms', '+447700900123', 'unsubscribe', NULL)",
            (client.id, client.id),
        )
        cur = await conn.execute(
            "INSERT INTO public.leads (client_id, email, dedupe_key, status)"
            " VALUES (%s, 'ann@acme.example', 'email:ann@acme.example', 'qualified')"
            " RETURNING id",
            (client.id,),
        )
        lead = await cur.fetchone()
        assert lead is not None
        await conn.execute(
            "INSERT INTO public.communications (lead_id, client_id, type, recipient, subject,"
            " status, provider, content, error_message, retry_count)"
            " VALUES (%s, %s, 'email', 'ann@acme.example', 'Thanks for your interest',"
            " 'failed', 'resend', 'Hello', '550 mailbox unavailable', 3)",
            (lead[0], client.id),
        )
        await conn.execute(
            "INSERT INTO public.api_keys (client_id, name, prefix, key_hash)"
            " VALUES (%s, 'website form', 'lqs_Zx81QpLm', %s)",
            (client.id, secrets.token_bytes(32)),
        )


@pytest.fixture(scope="module")
def site(migrated_db: str) -> Iterator[str]:
    asyncio.run(_seed(migrated_db))
    app = build_app(migrated_db, tokens=TokenVerifier(secret=secrets.token_urlsafe(32)))
    with serving(app) as base_url:
        yield base_url


def _sign_in(browser: Any, site: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{site}/app/login")
    browser.find_element(By.ID, "email").send_keys(ADMIN_EMAIL)
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    WebDriverWait(browser, 10).until(lambda b: not b.current_url.endswith("/app/login"))


@pytest.mark.parametrize("shot", SCREENSHOTS, ids=lambda shot: shot.name)
def test_page_loads_cleanly_and_is_photographed(
    shot: Screenshot, browser: Any, site: str, tmp_path: Path
) -> None:
    folder = Path(os.environ.get(SCREENSHOTS_VARIABLE) or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    browser.delete_all_cookies()
    if shot.signed_in:
        _sign_in(browser, site)
    console_errors(browser)

    browser.get(f"{site}{shot.path}")
    target = folder / f"{shot.name}.png"
    assert browser.save_screenshot(str(target))

    assert console_errors(browser) == []
    assert target.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
