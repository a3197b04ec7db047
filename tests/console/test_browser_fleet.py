"""The console against a real fleet of one (this host's embedded agent, real processes):
the fleet and host pages, a FIFO-fed shell's finding appearing in the queue without a
reload, ack, suppress and the queue's filters, the SQL notebook, live queries, hunts,
packs and labels, what each role sees; and hostile values (a host identifier and
hostname, a FIFO and a unix socket path, a command line, names typed into the console,
all holding HTML and script) shown as text everywhere."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from xml.etree import ElementTree

import pytest

from tests.console.conftest import browser_page, screenshot, sign_in, sign_in_as, wait_for
from tests.console.fleet import (
    HOSTILE_ARG,
    HOSTILE_FIFO,
    HOSTILE_HOST,
    HOSTILE_HOSTNAME,
    HOSTILE_SOCKET,
    Fleet,
    start_fleet,
)

pytestmark = pytest.mark.slow

HOSTILE_NAME = "<img src=x onerror=window.pwned=6>"  # a name typed into the console


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Fleet]:
    started = start_fleet(tmp_path_factory.mktemp("console") / "home", sqlite_template)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def socket_shell(fleet: Fleet) -> int:
    return fleet.start_socket_shell()


@pytest.fixture(scope="module")
def finding(
    fleet: Fleet, socket_shell: int, browser: Any, request: pytest.FixtureRequest
) -> dict[str, Any]:
    """The FIFO shell's finding, watched arriving in an open findings page (the socket
    shell's comes in the same collections)."""
    with browser_page(browser, fleet.server.url) as page:
        sign_in(page, fleet.server.token)
        page.goto("/#/findings")
        wait_for(page, "#findings-status:has-text('findings')")
        pid = fleet.start_fifo_shell()
        deadline = time.monotonic() + 60
        while not (fleet.findings_of(pid) and fleet.findings_of(socket_shell)):
            assert time.monotonic() < deadline, "no finding for the FIFO-fed or the socket shell"
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


@pytest.fixture(scope="module")
def socket_finding(fleet: Fleet, socket_shell: int, finding: dict[str, Any]) -> dict[str, Any]:
    """The finding of the shell socat serves on the hostile socket."""
    return fleet.findings_of(socket_shell)[0]


@pytest.fixture(scope="module")
def users(fleet: Fleet) -> dict[str, tuple[str, str]]:
    """An observer and a hunter: role -> (user name, password)."""
    made = {}
    for name, role in (("olga", "observer"), ("hugo", "hunter")):
        answer = fleet.admin.post("/api/v1/admin/users", json={"name": name, "role": role})
        assert answer.status_code == 200, answer.text
        made[role] = (name, answer.json()["password"])
    return made


def finding_row(page: Any, finding: dict[str, Any]) -> Any:
    """The queue's row of ``finding``."""
    link = page.locator(f"a[href='#/findings/{finding['id']}']")
    return page.locator("#findings tbody tr", has=link)


def test_the_fleet_page_lists_the_host(
    fleet: Fleet, browser: Any, request: pytest.FixtureRequest
) -> None:
    with browser_page(browser, fleet.server.url) as page:
        sign_in(page, fleet.server.token)
        page.wait_for_selector("#hosts tbody tr")
        row = page.locator("#hosts tbody tr").first
        cells = row.locator("td").all_text_contents()
        assert cells[0] == HOSTILE_HOST
        assert cells[1] == HOSTILE_HOSTNAME  # as this host's agent reports it
        assert "Linux" in cells[2]
        assert cells[5] == "online"
        assert cells[6].startswith("baseline")  # learned explicitly: judging since then
        screenshot(page, "fleet", request)
        assert page.evaluate("window.pwned") is None
        assert page.locator("main img, main svg").count() == 0


def test_ack_from_the_queue(fleet: Fleet, finding: dict[str, Any], browser: Any) -> None:
    with browser_page(browser, fleet.server.url) as page:
        sign_in(page, fleet.server.token)
        page.goto("/#/findings")
        row = finding_row(page, finding)
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
        wait_for(page, "section.card .tree")
        assert page.text_content("main h1") == HOSTILE_HOST
        details = page.evaluate(
            """[...document.querySelectorAll('#host-details tbody tr')]
            .map(r => [r.cells[0].textContent, r.cells[1].textContent])"""
        )
        assert ["hostname", HOSTILE_HOSTNAME] in details
        tree = page.text_content("section.card .tree")
        assert HOSTILE_ARG in tree  # the FIFO-fed shell's child
        assert f"{HOSTILE_SOCKET},fork EXEC:sh" in tree  # socat, naming its socket
        assert HOSTILE_FIFO in finding_row(page, finding).text_content()  # in its reasons
        sections = page.locator("main section.card h2").all_text_contents()
        assert sections == ["Findings", "Process tree", "Data loss", "Status logs"]
        assert page.locator("#host-data-loss thead").count() == 1
        assert page.locator("#host-status-logs thead").count() == 1
        assert page.locator("main .error").count() == 0
        screenshot(page, "host", request)
        assert page.evaluate("window.pwned") is None
        assert page.locator("main img, main script, main svg").count() == 0


def test_an_observer_sees_the_host_process_tree(
    fleet: Fleet,
    finding: dict[str, Any],
    users: dict[str, tuple[str, str]],
    browser: Any,
    request: pytest.FixtureRequest,
) -> None:
    with browser_page(browser, fleet.server.url) as page:
        sign_in_as(page, *users["observer"])
        page.goto(f"/#/hosts/{HOSTILE_HOST}")
        wait_for(page, "section.card .tree")
        assert HOSTILE_ARG in page.text_content("section.card .tree")
        assert page.locator("main .error").count() == 0
        screenshot(page, "observer-host", request)
        assert page.evaluate("window.pwned") is None


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


def test_a_socket_served_shell_shows_its_socket_as_text_and_is_suppressed_fleet_wide(
    fleet: Fleet, socket_finding: dict[str, Any], browser: Any
) -> None:
    with browser_page(browser, fleet.server.url) as page:
        sign_in(page, fleet.server.token)
        page.goto(f"/#/findings/{socket_finding['id']}")
        wait_for(page, "#trace-svg g.node.focus")
        unix = page.locator("#trace-svg g.edge.ipc[data-kind='unix'] title").all_text_contents()
        assert any(HOSTILE_SOCKET in label for label in unix), unix
        assert HOSTILE_SOCKET in page.text_content("#trace-text")
        assert page.evaluate("window.pwned") is None
        assert page.locator("main img, main script").count() == 0

        page.goto("/#/findings")
        row = finding_row(page, socket_finding)
        row.locator("input.note").fill("socat's shells are expected")
        row.locator("select[name=scope]").select_option("fleet")
        row.locator("button.suppress").click()
        page.wait_for_function(
            "id => [...document.querySelectorAll('#findings tbody tr')].some(r =>"
            " r.textContent.includes(id) && r.children[2].textContent === 'suppressed')",
            arg=socket_finding["id"],
        )
    shown = fleet.admin.get(f"/api/v1/admin/findings/{socket_finding['id']}").json()
    assert shown["finding"]["status"] == "suppressed"
    assert shown["finding"]["note"] == "socat's shells are expected"
    entries = fleet.admin.get("/api/v1/admin/baseline").json()["entries"]
    fleet_wide = [e["entry"] for e in entries if e["section"] == "learned.fleet"]
    assert socket_finding["key"] in fleet_wide, entries


def test_the_findings_filters(fleet: Fleet, finding: dict[str, Any], browser: Any) -> None:
    """Each filter, asked of the API as set and shown as answered: severity, status, host
    (by hostname) and the time the finding was seen in, each set to leave the finding out
    and then to list it (since its last sighting and until its first, to the second)."""
    path = f"/api/v1/admin/findings/{finding['id']}"
    deadline = time.monotonic() + 60
    while (shown := fleet.admin.get(path).json()["finding"])["last_seen"] == shown["first_seen"]:
        assert time.monotonic() < deadline, "the finding was never seen again"
        fleet.collect()  # seen again: "since" and "until" then tell its two times apart
    other = "suppressed" if shown["status"] != "suppressed" else "open"
    with browser_page(browser, fleet.server.url) as page:
        sign_in(page, fleet.server.token)
        page.goto("/#/findings")
        row = f"#findings a[href='#/findings/{finding['id']}']"
        wait_for(page, row)

        def second(iso: str, by: int) -> str:
            """``iso`` moved ``by`` seconds, as the page's datetime-local inputs take it."""
            return str(
                page.evaluate(
                    """([iso, by]) => { const at = new Date(Date.parse(iso) + by * 1000);
                    return new Date(at - at.getTimezoneOffset() * 60000)
                    .toISOString().slice(0, 19); }""",
                    [iso, by],
                )
            )

        def filtered(**fields: str) -> dict[str, str]:
            """Set ``fields`` and filter; once the list is drawn again, what the page
            asked the API for."""
            for name, value in fields.items():
                if name in ("min_severity", "status"):
                    page.select_option(f"#filter-{name}", value)
                else:
                    page.fill(f"#filter-{name}", value)
            drawn = page.query_selector("#findings")
            with page.expect_request(lambda r: "/api/v1/admin/findings?" in r.url) as asked:
                page.click("#finding-filters button[type=submit]")
            if drawn is None:
                wait_for(page, "#findings")
            else:
                page.wait_for_function("table => !table.isConnected", arg=drawn)
            return dict(parse_qsl(urlsplit(asked.value.url).query))

        def listed() -> bool:
            return bool(page.locator(row).count() == 1)

        def left_out() -> bool:
            """Not listed in a list that was drawn (an error draws none)."""
            return bool(page.locator("#findings").count() == 1) and not listed()

        assert filtered(min_severity="critical")["min_severity"] == "critical"
        assert set(page.locator("#findings tbody td:nth-child(2)").all_text_contents()) <= {
            "critical"
        }
        assert listed() if shown["severity"] == "critical" else left_out(), shown
        assert filtered(min_severity="info")["min_severity"] == "info" and listed()
        assert filtered(status=other)["status"] == other and left_out()
        assert filtered(status=shown["status"])["status"] == shown["status"] and listed()
        filtered(host="no-such-host")
        assert "no host matches" in page.text_content("main .error")
        assert filtered(host=HOSTILE_HOSTNAME)["host"] == HOSTILE_HOSTNAME and listed()
        filtered(since=second(shown["last_seen"], 1))
        assert left_out()
        assert filtered(since=second(shown["last_seen"], 0))["since"] == shown["last_seen"]
        assert listed()
        filtered(since="", until=second(shown["first_seen"], -1))
        assert left_out()
        assert filtered(until=second(shown["first_seen"], 0))["until"] == shown["first_seen"]
        assert listed()
        filtered(since="2030-01-02T00:00:00", until="2030-01-01T00:00:00")
        assert "'until' is before 'since'" in page.text_content("main .error")
        assert page.evaluate("window.pwned") is None


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
        with page.expect_download() as json_file:
            page.click("#download-json")
        assert json_file.value.suggested_filename == "hunt.json"
        as_json = json.loads(Path(json_file.value.path()).read_text())
        assert [{k: str(v) for k, v in r.items()} for r in as_json] == rows  # CSV's rows, typed
        assert all(isinstance(r["pid"], int) for r in as_json)

        page.fill("#sql-save-name", HOSTILE_NAME)
        page.click("#sql-save")
        page.wait_for_selector(f"#sql-save-said:has-text('created {HOSTILE_NAME}')")
        shared = fleet.admin.get("/api/v1/admin/sql/saved").json()["queries"]
        assert [(q["name"], q["saved_by"]) for q in shared] == [(HOSTILE_NAME, "admin")]
        options = page.locator("#sql-saved option").all_text_contents()
        assert f"{HOSTILE_NAME} (admin)" in options
        page.fill("#sql-editor", "")
        page.select_option("#sql-saved", HOSTILE_NAME)
        assert page.input_value("#sql-editor") == shared[0]["sql"]
        assert page.evaluate("window.pwned") is None
        kept = page.evaluate("JSON.parse(localStorage.getItem('fleetctl.sql.history'))")
        assert kept[0].startswith("SELECT pid, name, cmdline") and "SELECT * FROM nowhere" in kept

        # 250 rows: the grid shows them 100 a page.
        page.fill(
            "#sql-editor",
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 250)"
            " SELECT i FROM s",
        )
        page.click("#sql-run")
        turns = [
            ("", 1, 1, 100),
            ("next", 2, 101, 200),
            ("next", 3, 201, 250),
            ("prev", 2, 101, 200),
        ]
        for turn, number, first, last in turns:
            if turn:
                page.click(f"#sql-grid button.{turn}")
            wait_for(page, f"#sql-grid .page-info:text-is('page {number} of 3 (250 rows)')")
            cells = page.locator("#sql-grid tbody td").all_text_contents()
            assert cells == [str(i) for i in range(first, last + 1)]
            assert page.is_disabled("#sql-grid button.prev") == (number == 1)
            assert page.is_disabled("#sql-grid button.next") == (number == 3)


def test_live_queries_to_each_kind_of_target_and_an_error_answer(
    fleet: Fleet, finding: dict[str, Any], browser: Any, request: pytest.FixtureRequest
) -> None:
    """A query per kind of target, each followed in a tab of its own and answered in the
    same collection; the one sent to all overflows on the host, whose error is shown."""
    made = fleet.admin.post("/api/v1/admin/labels", json={"name": "live", "hosts": [HOSTILE_HOST]})
    assert made.status_code == 200, made.text
    hostile = "SELECT pid, cmdline FROM processes WHERE cmdline LIKE '%pwned=3%'"
    overflow = "SELECT abs(-9223372036854775807 - 1) AS boom FROM processes LIMIT 1"
    with browser_page(browser, fleet.server.url) as page:
        sign_in(page, fleet.server.token)
        page.goto("/#/live")
        page.fill("#live-sql", "SELECT * FROM no_such_table")
        page.click("#live-run")
        page.wait_for_selector("#live-progress .error")
        assert "does not validate" in page.text_content("#live-progress")

        tabs = {}
        targets = [("host", HOSTILE_HOST), ("platform", "linux"), ("label", "live"), ("all", "")]
        for kind, value in targets:
            tab = page if kind == "host" else page.context.new_page()
            tab.goto("/#/live")
            tab.select_option("#live-kind", kind)
            tab.fill("#live-target", value)
            tab.fill("#live-sql", overflow if kind == "all" else hostile)
            tab.click("#live-run")
            tab.wait_for_selector("#live-progress:has-text('/ 1 targeted')")
            tabs[kind] = tab
        deadline = time.monotonic() + 60
        while not all("1 answered" in t.text_content("#live-progress") for t in tabs.values()):
            assert time.monotonic() < deadline, [
                t.text_content("#live-progress") for t in tabs.values()
            ]
            fleet.collect()
            page.wait_for_timeout(1500)
        for kind, tab in tabs.items():
            tab.wait_for_selector("#live-host-states tbody tr")
            state = tab.locator("#live-host-states tbody tr td").all_text_contents()
            assert state[0] == HOSTILE_HOST, (kind, state)
            if kind == "all":
                assert state[1] == "failed" and "integer overflow" in state[4], state
            else:
                assert state[1] == "done", (kind, state)
                assert HOSTILE_ARG in tab.text_content("#live-results"), kind
            assert tab.evaluate("window.pwned") is None
        screenshot(page, "live", request)
        screenshot(tabs["all"], "live-error", request)


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
        pack["queries"][HOSTILE_NAME] = {"query": "SELECT pid FROM processes", "interval": 3600}
        page.fill("#pack-json", json.dumps(pack))
        assert page.is_disabled("#pack-apply")  # nothing applies before its diff is seen
        page.click("#pack-diff-button")
        page.wait_for_selector(f"#pack-diff tbody tr:has-text('{query}')")
        assert "interval" in page.text_content("#pack-diff")
        changes = page.locator("#pack-diff tbody tr td:nth-child(2)").all_text_contents()
        assert HOSTILE_NAME in changes
        screenshot(page, "packs", request, element="#pack-change-card")
        page.click("#pack-apply")
        page.wait_for_selector("#pack-applied tbody tr:has-text('updated')")
        after = fleet.admin.get("/api/v1/admin/packs/t1559-hunts").json()
        assert after["pack"]["version"] == before + 1
        assert after["body"]["queries"][query]["interval"] == 1234
        page.click("#packs a.pack-open:text-is('t1559-hunts')")
        wait_for(page, f"#pack-body:has-text('{HOSTILE_NAME}')")  # the version applied
        assert page.evaluate("window.pwned") is None
        assert page.locator("main img, main script").count() == 0

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
        page.goto("/#/coverage")
        page.wait_for_selector("#coverage-hosts tbody tr")
        assert page.text_content("#coverage-hosts tbody tr td") == HOSTILE_HOST
        assert page.locator("#coverage-platforms tbody tr").count() >= 1
        screenshot(page, "coverage", request)
        assert page.evaluate("window.pwned") is None


def test_a_label_change_is_diffed_before_it_is_applied(
    fleet: Fleet, finding: dict[str, Any], browser: Any, request: pytest.FixtureRequest
) -> None:
    """A manual label that a pack targets loses its host: the diff names the field, the
    host leaving and the pack's query the host loses, before Apply is offered; a dynamic
    label's query is refused with the validator's errors."""
    made = fleet.admin.post(
        "/api/v1/admin/labels", json={"name": "on-call", "hosts": [HOSTILE_HOST]}
    )
    assert made.status_code == 200, made.text
    uptime = {
        "queries": {"uptime": {"query": "SELECT total_seconds FROM uptime", "interval": 3600}}
    }
    targeting = {"name": "on-call-pack", "pack": uptime, "labels": ["on-call"]}
    applied = fleet.admin.post("/api/v1/admin/packs/apply", json={"packs": [targeting]})
    assert applied.status_code == 200, applied.text
    with browser_page(browser, fleet.server.url) as page:
        sign_in(page, fleet.server.token)
        page.goto("/#/labels")
        page.click("#labels a.label-open:text-is('on-call')")
        page.wait_for_selector("#label-members tbody tr")
        page.click("#label-edit")
        assert page.input_value("#label-name") == "on-call"
        assert page.input_value("#label-hosts") == HOSTILE_HOST
        page.fill("#label-hosts", "")
        page.fill("#label-description", HOSTILE_NAME)
        assert page.is_disabled("#label-apply")  # nothing applies before its diff is seen
        page.click("#label-diff-button")
        wait_for(page, "#label-apply:enabled")
        page.fill("#label-description", "changed since the diff")
        assert page.is_disabled("#label-apply")  # what applies is what was last diffed
        page.fill("#label-description", HOSTILE_NAME)
        page.click("#label-diff-button")
        wait_for(page, "#label-diff-summary:has-text('on-call: updated; members 1 → 0')")
        fields = page.locator("#label-diff-fields tbody tr").all_text_contents()
        assert fields == ["description" + HOSTILE_NAME]
        moved = page.locator("#label-diff-members tbody tr td").all_text_contents()
        assert moved == [HOSTILE_HOST, "leaves"]
        pack_row = page.locator("#label-diff tbody tr td").all_text_contents()
        assert pack_row == ["on-call-pack", "uptime", "targets changed", "0", "1", "0"]
        screenshot(page, "labels", request, element="main")
        page.click("#label-apply")
        wait_for(page, "#label-applied:text-is('on-call: updated')")
        shown = fleet.admin.get("/api/v1/admin/labels/on-call").json()
        assert (shown["label"]["description"], shown["members"]) == (HOSTILE_NAME, [])
        wait_for(page, "#labels tbody tr:has-text('on-call') td:nth-child(4):text-is('0')")
        wait_for(page, f"#label-detail p:has-text('{HOSTILE_NAME}')")  # shown again

        page.select_option("#label-kind", "dynamic")
        page.fill("#label-query", "SELECT 1 FROM no_such_table")
        page.click("#label-diff-button")
        wait_for(page, "#validation-errors")
        assert "no_such_table" in page.text_content("#validation-errors")
        assert page.is_disabled("#label-apply")
        assert page.evaluate("window.pwned") is None
        assert page.locator("main img, main script").count() == 0


def test_each_role_sees_only_what_it_may_do_and_an_admin_the_audit_trail(
    fleet: Fleet,
    finding: dict[str, Any],
    users: dict[str, tuple[str, str]],
    browser: Any,
    request: pytest.FixtureRequest,
) -> None:
    with browser_page(browser, fleet.server.url) as page:
        sign_in_as(page, *users["observer"])
        assert page.text_content("#who").startswith("olga (observer, ")
        shown = [a.text_content() for a in page.locator("#nav a").all() if a.is_visible()]
        assert "Findings" in shown and "Fleet" in shown
        assert not {"SQL", "Live query", "Audit"} & set(shown)
        page.goto("/#/findings")
        row = finding_row(page, finding)
        row.wait_for()
        assert row.locator("button.suppress").count() == 1  # drawn, and hidden by role
        assert not row.locator("button.suppress").is_visible()
        page.goto("/#/hunts")
        page.wait_for_selector("h1:text('Hunts')")
        assert not page.locator("#hunt-form").is_visible()
        screenshot(page, "observer-findings", request)
        page.goto("/#/packs")
        page.click("#packs a.pack-open:text-is('t1559-hunts')")
        page.wait_for_selector("#pack-body")
        assert not page.locator("#pack-detail button:text('Edit')").is_visible()
        assert not page.locator("#pack-change-card").is_visible()
        page.goto("/#/labels")
        page.wait_for_selector("#labels")
        assert not page.locator("#label-change-card").is_visible()

    with browser_page(browser, fleet.server.url) as page:
        sign_in_as(page, *users["hunter"])
        page.goto("/#/packs")
        page.click("#packs a.pack-open:text-is('t1559-hunts')")
        page.wait_for_selector("#pack-body")
        page.click("#pack-detail button:text('Edit')")
        assert page.is_visible("#pack-diff-button") and not page.is_visible("#pack-apply")
        page.click("#pack-diff-button")  # a hunter may see what a change would do
        page.wait_for_selector("#pack-diff")
        assert not page.is_visible("#pack-apply")
        page.goto("/#/labels")
        page.fill("#label-name", "hunters")
        page.fill("#label-hosts", HOSTILE_HOST)
        page.click("#label-diff-button")
        wait_for(page, "#label-diff-summary:has-text('hunters: created; members 0 → 1')")
        assert not page.is_visible("#label-apply")
        screenshot(page, "hunter-labels", request)

    with browser_page(browser, fleet.server.url) as page:
        sign_in(page, fleet.server.token)
        page.goto("/#/audit")
        page.wait_for_selector("#audit-entries tbody tr")
        users_seen = page.locator("#audit-entries tbody tr td:nth-child(3)").all_text_contents()
        assert {"olga", "hugo"} <= set(users_seen)  # their sign-ins
        page.click("#audit-verify")
        page.wait_for_selector("#audit-verified:has-text('is intact')")
        screenshot(page, "audit", request)
