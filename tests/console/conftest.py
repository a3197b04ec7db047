"""A real server (TLS on loopback) and a real Chromium driven by Playwright.

Chromium is Debian's ``chromium`` package (``.ci/run`` installs it); the browser tests
skip only where it is missing, and fail under ``CI=true`` instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningServer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from browser_flags import CHROMIUM_ARGS  # the benchmark starts Chromium the same way

CHROMIUM = os.environ.get("FLEETCTL_TEST_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = "console-screenshots"


@pytest.fixture
def console_server(
    tmp_path: Path, sqlite_template: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningServer]:
    """A server on its own SQLite store (the console's store reads are the admin API's,
    which the server tests run on both databases)."""
    home = tmp_path / "home"
    monkeypatch.setenv("FLEETCTL_HOME", str(home))
    db = tmp_path / "fleet.db"
    shutil.copy(sqlite_template, db)
    srv = RunningServer(home, f"sqlite:///{db}")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for one test module. Playwright's sync API keeps an event loop running in
    the test's thread while it is open: kept for the whole session, it broke every later
    test on the worker that runs asyncio there (the embedded engine, the extension)."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Chromium is required under CI=true: {CHROMIUM} is missing")
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@contextlib.contextmanager
def browser_page(browser: Any, url: str) -> Iterator[Any]:
    """A page in a fresh browser context (no cookies), ignoring certificate errors: the
    server's CA is made per test server."""
    context = browser.new_context(
        ignore_https_errors=True, base_url=url, viewport={"width": 1400, "height": 900}
    )
    opened = context.new_page()
    opened.set_default_timeout(30_000)
    try:
        yield opened
    finally:
        context.close()


@pytest.fixture
def page(browser: Any, console_server: RunningServer) -> Iterator[Any]:
    with browser_page(browser, console_server.url) as opened:
        yield opened


def screenshot(page: Any, name: str, request: pytest.FixtureRequest, element: str = "") -> Path:
    """Save the page (or one ``element`` of it) under the test run's output
    (``console-screenshots`` beside the test session's temporary folders)."""
    folder = Path(request.config._tmp_path_factory.getbasetemp()) / SCREENSHOTS  # type: ignore[attr-defined]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    if element:
        page.locator(element).screenshot(path=str(path))
    else:
        page.screenshot(path=str(path))  # the viewport: what an admin sees first
    return path


def wait_for(page: Any, selector: str) -> None:
    """``page.wait_for_selector``, saying on a timeout what the page showed instead (an
    error box, an empty view): a browser test that fails should say why."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_selector(selector)
    except PlaywrightTimeout as timeout:
        shown = page.inner_text("main")[:2000]
        raise AssertionError(
            f"{selector} never showed; at {page.url} the page shows:\n{shown}"
        ) from timeout


def sign_in(page: Any, token: str) -> None:
    """Sign in with an API token (the CLI's admin token, in most tests)."""
    page.goto("/")
    page.click("#with-token summary")
    page.fill("#token", token)
    page.click("#sign-in-form button[type=submit]")
    page.wait_for_selector("#nav:not([hidden])")


def sign_in_as(page: Any, user: str, password: str) -> None:
    """Sign in with a user name and password."""
    page.goto("/")
    page.fill("#user", user)
    page.fill("#password", password)
    page.click("#sign-in-form button[type=submit]")
    page.wait_for_selector("#nav:not([hidden])")
