"""A real browser for the console tests: Debian's Chromium driven by Playwright through its executable.

Playwright's own browser download cannot work offline; the system's ``chromium`` (``apt-get install
chromium``, done by ``scripts/system-deps.sh``) is launched by path instead. Missing in CI: the tests fail.
Screenshots of every page go to ``test-artifacts/console/`` (``BEAMBRIDGE_TEST_ARTIFACTS`` moves it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import unavailable

ARTIFACTS = Path(os.environ.get("BEAMBRIDGE_TEST_ARTIFACTS", Path(__file__).parents[3] / "test-artifacts"))
SCREENSHOTS = ARTIFACTS / "console"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_executable() -> str | None:
    """The system Chromium, if installed."""
    named = os.environ.get("BEAMBRIDGE_CHROMIUM")
    if named:
        return named
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the test session."""
    executable = chromium_executable()
    if executable is None:
        unavailable("Chromium is not installed (apt-get install chromium; scripts/system-deps.sh does it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed (it is a dev dependency)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


class PageWatch:
    """What a page did that it must not: violate its CSP, log errors, or ask another host for anything."""

    def __init__(self, page: Any, base_url: str) -> None:
        self.errors: list[str] = []
        self.foreign: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))

        def guard(route: Any) -> None:
            if route.request.url.startswith(base_url) or route.request.url.startswith("data:"):
                route.continue_()
            else:
                self.foreign.append(route.request.url)
                route.abort()

        page.route("**/*", guard)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def assert_clean(self) -> None:
        assert self.foreign == [], f"the page asked other hosts for {self.foreign}"
        assert self.errors == [], f"browser errors: {self.errors}"


def screenshot(page: Any, name: str) -> Path:
    """Keep a full-page screenshot as a test artifact."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
