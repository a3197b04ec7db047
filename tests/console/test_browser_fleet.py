"""The console against a real fleet of one (this host's embedded agent, real processes):
the fleet and host pages, a FIFO-fed shell's finding appearing in the queue without a
reload, its ack, and hostile host values (a hostname, a FIFO path and a command line
holding HTML and script) shown as text everywhere."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from tests.console.conftest import browser_page, screenshot, sign_in, sign_in_as, wait_for
from tests.console.fleet import (
    HOSTILE_ARG,
    HOSTILE_FIFO,
    HOSTILE_HOST,
    Fleet,
    start_fleet,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Fleet]:
    started = start_fleet(tmp_path_factory.mktemp("console") / "home", sqlite_template)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def finding(fleet: Fleet, browser: Any, request: pytest.FixtureRequest) -> dict[str, Any]:
    """The FIFO shell's finding, watched arriving in an open findings page."""
    with browser_page(browser, fleet.server.url) as page:
        sign_in(page, fleet.server.token)
        page.goto("/#/findings")
        wait_for(page, "#findings-status:has-text('findings')")
        pid = fleet.start_fifo_shell()
        deadline = time.monotonic() + 60
        while not fleet.findings_of(pid):
            assert time.monotonic() < deadline, "no finding for the FIFO-fed shell"
            fleet.collect()
        found = next(
            (f for f in fleet.findings_of(pid) if any("fifo" in r.lower() for r in f["reasons"])),
            fleet.findings_of(pid)[0],
        )
        # The open page shows it at its next poll, without a reload.
        wait_for(page, f"#findings a[href='#/findings/{found['id']}']")
        assert "new since opened" in page.text_content("#findings-status")
        screenshot(page, "findings", request)
        assert page.evaluate("window.pwned") is None
    return found


def test_the_fleet_page_lists_the_host(
    fleet: Fleet, browser: Any, request: pytest.FixtureRequest
) -> None:
    with browser_page(browser, fleet.server.url) as page:
        sign_in(page, fleet.server.token)
        page.wait_for_selector("#hosts tbody tr")
        row = page.locator("#hosts tbody tr").first
        cells = row.locator("td").all_text_contents()
        assert cells[0] == HOSTILE_HOST
        assert "Linux" in cells[2]
        assert cells[5] == "online"
        assert cells[6].startswith("baseline")  # learned explicitly: judging since then
        screenshot(page, "fleet", request)
        assert page.evaluate("window.pwned") is None
        assert page.locator("main img").count() == 0


def test_ack_from_the_queue(fleet: Fleet, finding: dict[str, Any], browser: Any) -> None:
    with browser_page(browser, fleet.server.url) as page:
        sign_in(page, fleet.server.token)
        page.goto("/#/findings")
        row = page.locator(
            "#findings tbody tr", has=page.locator(f"a[href='#/findings/{finding['id']}']")
        )
        row.locator("input.note").fill("looked at <b>it</b>")
        row.locator("button.ack").click()
        page.wait_for_function(
            "id => [...document.querySelectorAll('#findings tbody tr')].some(r =>"
            " r.textContent.includes(id) && r.children[2].textContent === 'acked')",
            arg=finding["id"],
        )
    shown = fleet.admin.get(f"/api/v1/admin/findings/{finding['id']}").json()
    assert shown["finding"]["status"] == "acked"
    assert shown["finding"]["acked_by"] == "admin"  # the user of the token signed in with
    assert shown["finding"]["note"] == "looked at <b>it</b>"


def test_the_host_page_shows_hostile_values_as_text(
    fleet: Fleet, finding: dict[str, Any], browser: Any, request: pytest.FixtureRequest
) -> None:
    with browser_page(browser, fleet.server.url) as page:
        sign_in(page, fleet.server.token)
        page.goto(f"/#/hosts/{HOSTILE_HOST}")
        page.wait_for_selector("h1:text('Process tree')" if False else "section.card .tree")
        assert page.text_content("main h1") == HOSTILE_HOST
        tree = page.text_content("section.card .tree")
        assert HOSTILE_ARG in tree
        assert page.locator(f"#findings a[href='#/findings/{finding['id']}']").count() == 1
        screenshot(page, "host", request)
        assert page.evaluate("window.pwned") is None
        assert page.locator("main img, main script").count() == 0
        assert HOSTILE_FIFO  # the FIFO's name is checked on the graph page


def test_the_finding_graph_and_its_exports(
    fleet: Fleet, finding: dict[str, Any], browser: Any, request: pytest.FixtureRequest
) -> None:
    with browser_page(browser, fleet.server.url) as page:
        sign_in(page, fleet.server.token)
        page.goto("/#/findings")
        page.click(f"#findings a[href='#/findings/{finding['id']}']")
        page.wait_for_selector("#trace-svg")
        focus = page.locator("#trace-svg g.node.focus")
        assert focus.get_attribute("data-pid") == str(finding["pid"])
        fifo_edges = page.locator("#trace-svg g.edge.ipc[data-kind='fifo'] title")
        labels = fifo_edges.all_text_contents()
        assert any(HOSTILE_FIFO in label for label in labels), labels
        assert page.locator("#triage details.answer").count() > 0
        screenshot(page, "finding", request)
        screenshot(page, "trace", request, element="#trace")
        assert page.evaluate("window.pwned") is None
        assert page.locator("main img, main script").count() == 0

        with page.expect_download() as dot:
            page.click("#export-dot")
        dot_text = Path(dot.value.path()).read_text()
        assert dot_text.startswith("digraph") and str(finding["pid"]) in dot_text
        with page.expect_download() as svg:
            page.click("#export-svg")
        tree = ElementTree.parse(svg.value.path())  # well-formed XML, host text escaped
        texts = " ".join(t.text or "" for t in tree.iter("{http://www.w3.org/2000/svg}title"))
        assert HOSTILE_FIFO in texts

        # The time picker: before the shell started, the process did not exist.
        page.fill("#trace-at", "2020-01-01T00:00:00")
        page.click("#trace-form button[type=submit]")
        page.wait_for_selector(f"#trace .error:has-text('no process {finding['pid']}')")


def test_the_sql_notebook(
    fleet: Fleet, finding: dict[str, Any], browser: Any, request: pytest.FixtureRequest
) -> None:
    with browser_page(browser, fleet.server.url) as page:
        sign_in(page, fleet.server.token)
        page.goto("/#/sql")
        page.wait_for_selector("#views summary:text('hunt_processes')")
        page.fill("#sql-editor", "SELECT * FROM nowhere")
        page.click("#sql-run")
        page.wait_for_selector("#sql-result .error")
        assert "nowhere" in page.text_content("#sql-result .error")

        page.fill(
            "#sql-editor",
            "SELECT pid, name, cmdline FROM hunt_processes WHERE removed_at IS NULL"
            " AND cmdline LIKE '%pwned=3%' AND ",
        )
        page.fill("#as-of", "2030-01-01T00:00:00")
        page.click("#as-of-insert")
        assert "first_seen <= " in page.input_value("#sql-editor")
        page.click("#sql-run")
        page.wait_for_selector("#sql-grid tbody tr")
        assert HOSTILE_ARG in page.text_content("#sql-grid tbody")
        page.click("#sql-grid th:text('pid')")
        page.click("#sql-grid th:text('pid')")  # descending
        pids = [
            int(p) for p in page.locator("#sql-grid tbody tr td:first-child").all_text_contents()
        ]
        assert pids == sorted(pids, reverse=True)
        screenshot(page, "sql", request)
        assert page.evaluate("window.pwned") is None

        with page.expect_download() as csv_file:
            page.click("#download-csv")
        text = Path(csv_file.value.path()).read_text()
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
        assert rows and any(HOSTILE_ARG in r["cmdline"] for r in rows)
        assert set(rows[0]) == {"pid", "name", "cmdline"}
        page.fill("#sql-save-name", "hostile processes")
        page.click("#sql-save")
        page.wait_for_selector("#sql-save-said:has-text('created hostile processes')")
        shared = fleet.admin.get("/api/v1/admin/sql/saved").json()["queries"]
        assert [(q["name"], q["saved_by"]) for q in shared] == [("hostile processes", "admin")]
        page.fill("#sql-editor", "")
        page.select_option("#sql-saved", "hostile processes")
        assert page.input_value("#sql-editor") == shared[0]["sql"]
        kept = page.evaluate("JSON.parse(localStorage.getItem('fleetctl.sql.history'))")
        assert kept[0].startswith("SELECT pid, name, cmdline") and "SELECT * FROM nowhere" in kept


def test_a_live_query_to_this_host(
    fleet: Fleet, finding: dict[str, Any], browser: Any, request: pytest.FixtureRequest
) -> None:
    with browser_page(browser, fleet.server.url) as page:
        sign_in(page, fleet.server.token)
        page.goto("/#/live")
        page.fill("#live-sql", "SELECT * FROM no_such_table")
        page.click("#live-run")
        page.wait_for_selector("#live-progress .error")
        assert "does not validate" in page.text_content("#live-progress")

        page.select_option("#live-kind", "host")
        page.fill("#live-target", HOSTILE_HOST)
        page.fill("#live-sql", "SELECT pid, cmdline FROM processes WHERE cmdline LIKE '%pwned=3%'")
        page.click("#live-run")
        page.wait_for_selector("#live-progress:has-text('/ 1 targeted')")
        deadline = time.monotonic() + 60
        while "1 answered" not in page.text_content("#live-progress"):
            assert time.monotonic() < deadline, page.text_content("#live-progress")
            fleet.collect()
            page.wait_for_timeout(1500)
        page.wait_for_selector("#live-results tbody tr")
        assert HOSTILE_ARG in page.text_content("#live-results")
        assert page.text_content("#live-host-states tbody tr td:nth-child(2)") == "done"
        screenshot(page, "live", request)
        assert page.evaluate("window.pwned") is None


def test_a_hunt_created_runs_and_is_paused_resumed_and_cancelled(
    fleet: Fleet, finding: dict[str, Any], browser: Any, request: pytest.FixtureRequest
) -> None:
    with browser_page(browser, fleet.server.url) as page:
        sign_in(page, fleet.server.token)
        page.goto("/#/hunts")
        page.fill("#hunt-name", "bad")
        page.fill("#hunt-schedule", "0")
        page.click("#hunt-create")
        page.wait_for_selector("#hunt-error .error")
        assert "'every'" in page.text_content("#hunt-error")

        page.fill("#hunt-name", "hostile-shells")
        page.fill("#hunt-schedule", "3600")
        page.fill("#hunt-targets", f"host:{HOSTILE_HOST}")
        page.fill("#hunt-sql", "SELECT pid, cmdline FROM processes WHERE cmdline LIKE '%pwned=3%'")
        page.click("#hunt-create")
        page.wait_for_selector("#hunt-runs tbody tr")  # an interval hunt fires at once
        row = page.locator("#hunts tbody tr", has_text="hostile-shells")
        assert row.locator("td").nth(2).text_content() == "every 1h"
        deadline = time.monotonic() + 60
        while True:
            fleet.collect()
            page.click("#hunt-runs button.run-results")
            page.wait_for_selector("#hunt-results-status")
            if "run 1: 0 rows" not in page.text_content("#hunt-results-status"):
                break
            assert time.monotonic() < deadline, "the hunt's run got no answer"
        page.wait_for_selector("#hunt-results tbody tr")
        assert HOSTILE_ARG in page.text_content("#hunt-results")
        page.click("#hunt-runs button.run-diff")
        page.wait_for_selector("#hunt-results-status:has-text('new since')")
        page.wait_for_selector("#hunts tbody tr:has-text('1 done')")
        screenshot(page, "hunts", request)
        assert page.evaluate("window.pwned") is None

        for button, state in [("pause", "paused"), ("resume", "active"), ("cancel", "cancelled")]:
            page.locator("#hunts tbody tr", has_text="hostile-shells").locator(
                f"button.{button}"
            ).click()
            page.wait_for_selector(
                f"#hunts tbody tr:has-text('hostile-shells') td:text-is('{state}')"
            )
    shown = fleet.admin.get("/api/v1/admin/hunts/hostile-shells").json()
    assert shown["hunt"]["state"] == "cancelled" and shown["runs"][0]["done"] == 1


def test_an_open_hunt_shows_a_run_that_fires_after_it_was_opened(
    fleet: Fleet, browser: Any
) -> None:
    """The open hunt's runs are read again with the list: a hunt shown before its first
    run fired (the scheduler busy) shows the run when it comes, without a reload. Here
    the hunt's answers hide its runs until the page has shown it."""
    hide = [True]

    def before_its_first_run(route: Any) -> None:
        if not hide[0]:
            route.continue_()
            return
        response = route.fetch()
        route.fulfill(response=response, json={**response.json(), "runs": []})

    with browser_page(browser, fleet.server.url) as page:
        page.route("**/api/v1/admin/hunts/late-run", before_its_first_run)
        sign_in(page, fleet.server.token)
        page.goto("/#/hunts")
        page.fill("#hunt-name", "late-run")
        page.fill("#hunt-schedule", "3600")
        page.fill("#hunt-targets", f"host:{HOSTILE_HOST}")
        page.click("#hunt-create")
        page.wait_for_selector("#hunt-runs", state="attached")
        assert page.locator("#hunt-runs tbody tr").count() == 0
        hide[0] = False
        page.wait_for_selector("#hunt-runs tbody tr", timeout=15_000)  # the 5 s poll
    assert fleet.admin.post("/api/v1/admin/hunts/late-run/cancel", json={}).status_code == 200


def test_packs_diff_before_apply_and_validation_errors(
    fleet: Fleet, finding: dict[str, Any], browser: Any, request: pytest.FixtureRequest
) -> None:
    with browser_page(browser, fleet.server.url) as page:
        sign_in(page, fleet.server.token)
        page.goto("/#/packs")
        page.click("#packs a.pack-open:text-is('t1559-hunts')")
        page.wait_for_selector("#pack-body")
        before = fleet.admin.get("/api/v1/admin/packs/t1559-hunts").json()["pack"]["version"]
        page.click("#pack-detail button:text('Edit')")
        pack = json.loads(page.input_value("#pack-json"))
        query = next(iter(pack["queries"]))
        pack["queries"][query]["interval"] = 1234
        page.fill("#pack-json", json.dumps(pack))
        assert page.is_disabled("#pack-apply")  # nothing applies before its diff is seen
        page.click("#pack-diff-button")
        page.wait_for_selector(f"#pack-diff tbody tr:has-text('{query}')")
        assert "interval" in page.text_content("#pack-diff")
        screenshot(page, "packs", request)
        page.click("#pack-apply")
        page.wait_for_selector("#pack-applied tbody tr:has-text('updated')")
        after = fleet.admin.get("/api/v1/admin/packs/t1559-hunts").json()
        assert after["pack"]["version"] == before + 1
        assert after["body"]["queries"][query]["interval"] == 1234

        pack["queries"][query]["query"] = "SELECT pid FROM no_such_table"
        page.fill("#pack-json", json.dumps(pack))
        page.click("#pack-diff-button")
        page.wait_for_selector("#validation-errors")
        errors = page.text_content("#validation-errors")
        assert "no_such_table" in errors and query in errors
        page.fill("#pack-json", "{not json")
        page.click("#pack-diff-button")
        page.wait_for_selector("#pack-change .error:has-text('not JSON')")


def test_labels_and_coverage(
    fleet: Fleet, finding: dict[str, Any], browser: Any, request: pytest.FixtureRequest
) -> None:
    made = fleet.admin.post(
        "/api/v1/admin/labels",
        json={"name": "watched", "hosts": [HOSTILE_HOST], "description": "<b>hand</b> picked"},
    )
    assert made.status_code == 200, made.text
    with browser_page(browser, fleet.server.url) as page:
        sign_in(page, fleet.server.token)
        page.goto("/#/labels")
        page.click("#labels a.label-open:text-is('watched')")
        page.wait_for_selector("#label-members tbody tr")
        assert page.text_content("#label-members tbody tr td") == HOSTILE_HOST
        assert "<b>hand</b> picked" in page.text_content("#label-detail")
        screenshot(page, "labels", request)
        page.goto("/#/coverage")
        page.wait_for_selector("#coverage-hosts tbody tr")
        assert page.text_content("#coverage-hosts tbody tr td") == HOSTILE_HOST
        assert page.locator("#coverage-platforms tbody tr").count() >= 1
        screenshot(page, "coverage", request)
        assert page.evaluate("window.pwned") is None


def test_an_observer_sees_no_action_it_may_not_take_and_an_admin_the_audit_trail(
    fleet: Fleet, finding: dict[str, Any], browser: Any, request: pytest.FixtureRequest
) -> None:
    made = fleet.admin.post("/api/v1/admin/users", json={"name": "olga", "role": "observer"})
    assert made.status_code == 200, made.text
    with browser_page(browser, fleet.server.url) as page:
        sign_in_as(page, "olga", made.json()["password"])
        assert page.text_content("#who").startswith("olga (observer, ")
        shown = [a.text_content() for a in page.locator("#nav a").all() if a.is_visible()]
        assert "Findings" in shown and "Fleet" in shown
        assert not {"SQL", "Live query", "Audit"} & set(shown)
        page.goto("/#/findings")
        row = page.locator(
            "#findings tbody tr", has=page.locator(f"a[href='#/findings/{finding['id']}']")
        )
        row.wait_for()
        assert row.locator("button.suppress").count() == 1  # drawn, and hidden by role
        assert not row.locator("button.suppress").is_visible()
        page.goto("/#/hunts")
        page.wait_for_selector("h1:text('Hunts')")
        assert not page.locator("#hunt-form").is_visible()
        screenshot(page, "observer-findings", request)

    with browser_page(browser, fleet.server.url) as page:
        sign_in(page, fleet.server.token)
        page.goto("/#/audit")
        page.wait_for_selector("#audit-entries tbody tr")
        users = page.locator("#audit-entries tbody tr td:nth-child(3)").all_text_contents()
        assert "olga" in users  # her sign-in
        page.click("#audit-verify")
        page.wait_for_selector("#audit-verified:has-text('is intact')")
        screenshot(page, "audit", request)
