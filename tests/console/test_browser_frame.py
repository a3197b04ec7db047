"""The console's frame in a real Chromium: signing in and out, and a change without
the CSRF nonce refused even from the console's own page."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import RunningServer
from tests.console.conftest import screenshot, sign_in


def test_sign_in_and_out(
    page: Any, console_server: RunningServer, request: pytest.FixtureRequest
) -> None:
    page.goto("/")
    page.wait_for_selector("#sign-in:not([hidden])")
    screenshot(page, "sign-in", request)
    page.fill("#user", "admin")
    page.fill("#password", "wrong password")
    page.click("#sign-in-form button[type=submit]")
    page.wait_for_selector("#sign-in-error:text('wrong user name or password')")

    sign_in(page, console_server.token)
    assert page.text_content("#who").startswith("admin (admin, until ")
    page.wait_for_selector("h1:text('Fleet')")
    cookies = {c["name"]: c for c in page.context.cookies()}
    cookie = cookies["fleetctl_console"]
    assert (cookie["httpOnly"], cookie["secure"], cookie["sameSite"]) == (True, True, "Strict")
    assert page.evaluate("document.cookie") == ""  # the page's script cannot read it

    page.reload()  # the cookie keeps the admin signed in
    page.wait_for_selector("#nav:not([hidden])")

    page.click("#sign-out")
    page.wait_for_selector("#sign-in:not([hidden])")
    assert "fleetctl_console" not in {c["name"] for c in page.context.cookies()}
    status = page.evaluate("fetch('/api/v1/admin/hosts').then(r => r.status)")
    assert status == 401


def test_a_change_without_the_nonce_is_refused(page: Any, console_server: RunningServer) -> None:
    sign_in(page, console_server.token)
    refused = page.evaluate(
        """fetch('/api/v1/admin/sql', {method: 'POST', headers: {'Content-Type':
        'application/json'}, body: JSON.stringify({sql: 'SELECT 1 AS one'})})
        .then(async r => [r.status, await r.json()])"""
    )
    assert refused == [403, {"error": "missing or wrong X-CSRF-Token header"}]
    allowed = page.evaluate(
        """fetch('/console/session').then(r => r.json()).then(s => fetch('/api/v1/admin/sql',
        {method: 'POST', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf},
        body: JSON.stringify({sql: 'SELECT 1 AS one'})})).then(r => r.status)"""
    )
    assert allowed == 200


def test_inline_script_is_refused_by_the_policy(page: Any, console_server: RunningServer) -> None:
    """The CSP holds in the browser: a script element inserted with text does not run."""
    sign_in(page, console_server.token)
    ran = page.evaluate(
        """() => { window.ran = false; const s = document.createElement('script');
        s.textContent = 'window.ran = true'; document.body.appendChild(s); return window.ran; }"""
    )
    assert ran is False


def test_a_page_left_while_loading_neither_draws_over_the_next_nor_keeps_polling(
    page: Any, console_server: RunningServer
) -> None:
    """The findings page is left before its first answer arrives (held back 2 s here, as
    on a busy server): the SQL page opened meanwhile stays, and the findings page's
    polling never starts."""
    held: list[Any] = []
    page.route("**/api/v1/admin/findings*", lambda route: held.append(route))
    sign_in(page, console_server.token)
    page.goto("/#/findings")
    page.wait_for_selector("#findings-status", state="attached")
    page.goto("/#/sql")
    page.wait_for_selector("h1:text('SQL')")
    for route in held:
        route.continue_()
    page.unroute("**/api/v1/admin/findings*")
    page.wait_for_timeout(6_000)  # past the findings page's 5 s poll
    assert page.locator("main h1").all_text_contents() == ["SQL"]
    assert page.locator("#findings-status").count() == 0
    polls = page.evaluate(
        """performance.getEntriesByType('resource')
        .filter(e => e.name.includes('/admin/findings')).length"""
    )
    assert polls == len(held) == 1
