"""PNGs of the dashboard's pages: ``make screenshots`` writes them to docs/screenshots
(LQS_SCREENSHOTS_DIR); in the suite they go to a scratch folder, so every page listed
here is checked to load in Chromium without a console error.

A page is added in one line of :data:`SCREENSHOTS`. Pages for signed-in users are shown
to the user of a seeded client (:mod:`tests.dashboard_seed`), made an admin here, with a
suppression and an API key besides; ``{lead}`` and ``{communication}`` in a path are its
first lead and its HTML email.
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

from lqs.api.browser_session import SESSION_COOKIE
from lqs.api.tokens import TokenVerifier
from tests.browser.conftest import build_app, console_errors, serving
from tests.dashboard_seed import SeededClient, seed_client

SCREENSHOTS_VARIABLE = "LQS_SCREENSHOTS_DIR"


@dataclass(frozen=True)
class Screenshot:
    name: str
    """The file's name, without ``.png``."""
    path: str
    signed_in: bool = True


SCREENSHOTS = (
    Screenshot("login", "/app/login", signed_in=False),
    Screenshot("overview", "/app/"),
    Screenshot("leads", "/app/leads"),
    Screenshot("lead", "/app/leads/{lead}"),
    Screenshot("communications", "/app/communications"),
    Screenshot("communication", "/app/communications/{communication}"),
    Screenshot("suppressions", "/app/suppressions"),
    Screenshot("dead-letters", "/app/dead-letters"),
    Screenshot("keys", "/app/keys"),
    Screenshot("rules-test", "/app/rules-test"),
)


@dataclass(frozen=True)
class Site:
    url: str
    client: SeededClient
    tokens: TokenVerifier


async def _seed(url: str) -> SeededClient:
    """The seeded client, its user an admin (the admin pages are photographed too), with a
    suppression and an API key."""
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        client = await seed_client(conn, "Acme")
        await conn.execute(
            "UPDATE public.profiles SET role = 'admin' WHERE id = %s", (client.user_id,)
        )
        await conn.execute(
            "INSERT INTO public.suppressions (client_id, channel, recipient, reason, source)"
            " VALUES (%s, 'email', 'bounced@example.com', 'bounce', 'resend'),"
            " (%s, 'sms', '+447700900123', 'unsubscribe', NULL)",
            (client.client_id, client.client_id),
        )
        await conn.execute(
            "INSERT INTO public.api_keys (client_id, name, prefix, key_hash)"
            " VALUES (%s, 'website form', 'lqs_Zx81QpLm', %s)",
            (client.client_id, secrets.token_bytes(32)),
        )
        return client


@pytest.fixture(scope="module")
def site(migrated_db: str) -> Iterator[Site]:
    client = asyncio.run(_seed(migrated_db))
    tokens = TokenVerifier(secret=secrets.token_urlsafe(32))
    with serving(build_app(migrated_db, tokens=tokens)) as base_url:
        yield Site(base_url, client, tokens)


@pytest.mark.parametrize("shot", SCREENSHOTS, ids=lambda shot: shot.name)
def test_page_loads_cleanly_and_is_photographed(
    shot: Screenshot, browser: Any, site: Site, tmp_path: Path
) -> None:
    folder = Path(os.environ.get(SCREENSHOTS_VARIABLE) or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    browser.delete_all_cookies()
    if shot.signed_in:
        browser.get(f"{site.url}/app/login")  # a cookie needs its site open
        token, _ = site.tokens.issue(site.client.user_id)
        browser.add_cookie({"name": SESSION_COOKIE, "value": token, "path": "/app"})
    # Charts drawn at once, not photographed halfway through their animation.
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-reduced-motion", "value": "reduce"}]},
    )
    console_errors(browser)

    path = shot.path.format(
        lead=site.client.leads[0], communication=site.client.email_communication
    )
    browser.get(f"{site.url}{path}")
    browser.execute_script("return document.fonts.ready")
    target = folder / f"{shot.name}.png"
    assert browser.save_screenshot(str(target))

    assert browser.current_url == f"{site.url}{path}"  # not sent to sign in
    assert console_errors(browser) == []
    assert target.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
