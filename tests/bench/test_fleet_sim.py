"""The fleet simulator is honest: its hosts' rows have the shipped pack's columns, change
as the model says, replay through differential lines to the host's state, and a host's
lines go through the real server's ingest (all stored) and detection (its canary found)."""

from __future__ import annotations

import time
from collections import Counter

import orjson
import pytest
from fleet_hosts import COLUMNS, Agent, Host, QueryState, run_lines
from fleet_sim import canary_lag, self_check

from fleetctl.packs.loader import load_file, shipped_packs_dir
from fleetctl.schema import default_schema
from fleetctl.server.bootstrap import apply_shipped_packs_to_a_new_store
from tests.conftest import RunningServer

NOW = 1_780_000_000.0
TELEMETRY = load_file(shipped_packs_dir() / "ipc-telemetry.json")[0]


@pytest.mark.parametrize("query", sorted(COLUMNS))
def test_rows_have_the_columns_of_the_pack_sql(query: str) -> None:
    host = Host(1, 1, NOW)
    host.churn(NOW + 60)  # exec events come from processes started since
    host.add_canary(NOW + 61)  # and the named FIFO rows from the canary
    rows = [orjson.loads(r) for r in host.rows(query)]
    sql = TELEMETRY.query(query).query
    assert default_schema().columns(sql, "linux") == tuple(COLUMNS[query])
    assert rows
    assert all(set(row) == set(COLUMNS[query]) for row in rows)
    assert all(isinstance(v, str) for row in rows for v in row.values())


def test_a_host_is_about_400_processes_and_no_row_repeats_on_another_host() -> None:
    a, b = Host(1, 1, NOW), Host(2, 1, NOW)
    assert 330 <= len(a.procs) <= 470, len(a.procs)
    for query in ("process_lineage", "stdio_channels", "unix_sockets", "pipe_partners"):
        assert not set(a.rows(query)) & set(b.rows(query)), query


def test_churn_replaces_about_3_percent_per_interval_and_reuses_pids() -> None:
    host = Host(3, 1, NOW)
    seen = {(p.pid, p.start_time) for p in host.procs.values()}
    reused = 0
    for interval in range(1, 21):
        before = len(host.procs)
        gone = host.churn(NOW + 60 * interval)
        assert 0.015 * before <= len(gone) <= 0.06 * before, (interval, len(gone))
        now = {(p.pid, p.start_time) for p in host.procs.values()}
        old_pids = {pid for pid, _ in seen}
        reused += sum(1 for pid, start in now - seen if pid in old_pids)
        seen |= now
    assert reused > 0  # a freed pid came back with a new start time
    assert 330 <= len(host.procs) <= 470


def test_churned_rows_are_the_changed_processes_and_their_partners() -> None:
    host = Host(4, 1, NOW)
    before = set(host.rows("process_lineage"))
    host.churn(NOW + 60)
    after = set(host.rows("process_lineage"))
    assert 0 < len(after - before) <= 0.1 * len(after)
    assert host.rows("stdio_channels") == [
        r for p in host.procs.values() for r in _fresh_stdio(p.pid, host)
    ]


def _fresh_stdio(pid: int, host: Host) -> list[bytes]:
    from fleet_hosts import GENERATORS

    return GENERATORS["stdio_channels"](host, host.procs[pid])


def test_differential_lines_replay_to_the_host_rows() -> None:
    """removed/added lines of each run, applied in counter order, give the current rows."""
    host = Host(5, 1, NOW)
    sql = TELEMETRY.query("unix_sockets").query
    state, stored = QueryState(), Counter[bytes]()
    counters = []
    for interval in range(6):
        lines, _ = run_lines(
            host,
            "pack_ipc-telemetry_unix_sockets",
            "unix_sockets",
            sql,
            False,
            True,
            state,
            int(NOW) + interval,
        )
        for line in map(orjson.loads, lines):
            row = orjson.dumps(line["columns"], option=orjson.OPT_SORT_KEYS)
            stored[row] += 1 if line["action"] == "added" else -1
            counters.append(line["counter"])
        assert +stored == Counter(host.rows("unix_sockets"))
        host.churn(NOW + 60 * (interval + 1))
    assert counters[0] == 0 and counters == sorted(counters) and counters[-1] == 5


def test_the_schedule_is_the_linux_part_of_the_shipped_packs() -> None:
    agent = Agent(Host(6, 1, NOW))
    packs = {
        p.name: p.to_osquery()
        for f in sorted(shipped_packs_dir().glob("*.json"))
        for p in load_file(f)
    }
    assert agent.configure({"options": {"pack_delimiter": "_"}, "packs": packs})
    names = {q.name for q, _, _ in agent.schedule}
    assert "pack_ipc-telemetry_process_lineage" in names
    assert "pack_ipc-telemetry_process_lineage_darwin" not in names
    others = ("macos", "windows", "extension")  # other systems; discovery needs the extension
    assert not any(n.startswith(f"pack_ipc-telemetry-{o}_") for n in names for o in others)
    assert not agent.configure({"options": {"pack_delimiter": "_"}, "packs": packs})


def test_a_simulated_host_is_stored_and_its_canary_judged(
    db_url: str, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pathlib import Path

    home = Path(str(tmp_path)) / "home"
    monkeypatch.setenv("FLEETCTL_HOME", str(home))
    server = RunningServer(home, db_url)
    try:
        assert apply_shipped_packs_to_a_new_store(server.settings)
        started = time.monotonic()
        assert self_check(server.url, server.ca, server.secret, server.token) == []
        assert time.monotonic() - started < 120
    finally:
        server.stop()


def test_a_canary_runs_through_churn_until_it_expires() -> None:
    host = Host(7, 1, NOW)
    canary = host.add_canary(NOW)
    for interval in range(1, 5):
        host.churn(NOW + 60 * interval)
        assert {canary.pid, canary.writer} <= set(host.procs)
    sh = [
        orjson.loads(r)
        for r in host.rows("stdio_channels")
        if orjson.loads(r)["pid"] == str(canary.pid)
    ]
    assert {"fifo", "path"} <= {r["kind"] for r in sh}
    host.expire_canaries(NOW + 301, 300)
    assert not {canary.pid, canary.writer} & set(host.procs)
    assert not host.canaries


def test_the_simulator_client_talks_to_the_real_server_over_one_kept_alive_stream(
    db_url: str, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    from pathlib import Path

    from fleet_http import Pool, request_headers
    from fleet_sim import API, headers

    from fleetctl.cli.client import ssl_context

    home = Path(str(tmp_path)) / "home"
    monkeypatch.setenv("FLEETCTL_HOME", str(home))
    server = RunningServer(home, db_url)
    agent = Agent(Host(7, 1, NOW))

    async def talk() -> list[tuple[int, dict[str, object]]]:
        pool = Pool(server.url, ssl_context(server.ca))
        try:
            out = []
            status, raw = await pool.post(
                API + "enroll",
                agent.enroll_body(server.secret, int(time.time())),
                request_headers(headers(None)),
            )
            out.append((status, orjson.loads(raw)))
            agent.node_key = str(out[0][1].get("node_key"))
            first = pool.idle[0][1]
            for endpoint in ("config", "distributed/read", "nowhere"):
                status, raw = await pool.post(
                    API + endpoint, agent.keyed(), request_headers(headers(agent))
                )
                out.append((status, orjson.loads(raw)))
            assert [stream for _, stream in pool.idle] == [first]  # kept alive, reused
            return out
        finally:
            await pool.aclose()

    try:
        (enroll, config, read, unknown) = asyncio.run(talk())
    finally:
        server.stop()
    assert enroll[0] == 200 and enroll[1]["node_invalid"] is False and agent.node_key
    assert config[0] == 200 and "packs" in config[1]
    assert read[0] == 200 and read[1]["node_invalid"] is False
    assert unknown[0] == 404 and "error" in unknown[1]


def test_a_canary_lag_runs_from_the_last_post_before_its_finding() -> None:
    posted = (100.0, 130.0, 190.0)  # lineage, pipe_partners, stdio
    assert canary_lag(posted, 131.5) == 1.5  # found from the pipe partner row
    assert canary_lag(posted, 195.0) == 5.0  # found once everything was there
    assert canary_lag(posted, 99.0) == 0.0  # clocks a little apart never go negative
