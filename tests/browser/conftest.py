"""The dashboard in a real browser: the app served by uvicorn on 127.0.0.1 (a thread, an
ephemeral port, the module's migrated database) and Debian's headless Chromium driven
through its chromedriver (Selenium). One browser serves the whole session.

``make pytest`` installs ``chromium`` and ``chromium-driver`` when missing and root can;
where they are missing, these tests skip saying so.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from lqs.api.app import create_app
from tests.configs import api_config

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL_HINT = (
    "Debian's chromium and chromium-driver are not installed "
    "(`apt-get install chromium chromium-driver`; `make pytest` does it as root)"
)
START_TIMEOUT = 30.0

AppHook = Callable[[FastAPI], None]


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """``app`` served by uvicorn in a thread on an ephemeral port of 127.0.0.1; its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:  # a condition with a deadline, polled
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the app did not start under uvicorn (see the log above)")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=START_TIMEOUT)


def build_app(database_url: str, *hooks: AppHook, **config: Any) -> FastAPI:
    """The app as ``lqs serve`` builds it (``config`` replaces fields of its
    :class:`~lqs.api.app.ApiConfig`, e.g. ``tokens``); ``hooks`` add test-only routes."""
    app = create_app(database_url, api_config(**config))
    for hook in hooks:
        hook(app)
    return app


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium under chromedriver, one for the session; the browser's console
    is kept (``browser.get_log("browser")``)."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        # The gate (.ci/run) installs the browser and sets LQS_REQUIRE_BROWSER: there a
        # missing browser fails, so the browser tests can never pass by being skipped.
        if os.environ.get("LQS_REQUIRE_BROWSER"):
            pytest.fail(INSTALL_HINT)
        pytest.skip(INSTALL_HINT)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # as root, as in CI
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        "--window-size=1280,900",
        "--force-device-scale-factor=1",
        "--lang=en-GB",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(browser: Any) -> list[str]:
    """The browser console's errors since the last call (reading the log empties it)."""
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


WAIT = 10.0
"""Seconds a test waits for the page to show what it expects."""


def wait_until(browser: Any, condition: Any) -> Any:
    """What ``condition(browser)`` returns once it is truthy, within :data:`WAIT` seconds.

    An element looked for may not be there yet (the form's answer still loading), or be
    replaced between finding it and reading it (an htmx swap, a navigation): both mean
    "look again", not a failure.
    """
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(
        browser, WAIT, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
    ).until(condition)
