"""PNGs of the dashboard's pages: ``make screenshots`` writes them to docs/screenshots
(LQS_SCREENSHOTS_DIR); in the suite they go to a scratch folder, so every page listed
here is checked to load in Chromium without a console error.

A page is added in one line of :data:`SCREENSHOTS`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import build_app, console_errors, serving

SCREENSHOTS_VARIABLE = "LQS_SCREENSHOTS_DIR"


@dataclass(frozen=True)
class Screenshot:
    name: str
    """The file's name, without ``.png``."""
    path: str


SCREENSHOTS = (Screenshot("login", "/app/login"),)


@pytest.fixture(scope="module")
def site(migrated_db: str) -> Iterator[str]:
    with serving(build_app(migrated_db)) as base_url:
        yield base_url


@pytest.mark.parametrize("shot", SCREENSHOTS, ids=lambda shot: shot.name)
def test_page_loads_cleanly_and_is_photographed(
    shot: Screenshot, browser: Any, site: str, tmp_path: Path
) -> None:
    folder = Path(os.environ.get(SCREENSHOTS_VARIABLE) or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    browser.delete_all_cookies()
    console_errors(browser)

    browser.get(f"{site}{shot.path}")
    target = folder / f"{shot.name}.png"
    assert browser.save_screenshot(str(target))

    assert console_errors(browser) == []
    assert target.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
