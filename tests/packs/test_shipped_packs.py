"""The packs fleetctl ships: they validate, document themselves and find what they claim.

The behaviour tests run shipped queries in plain SQLite over tables shaped like osquery's
(one table per schema table, every column), filled with rows an attacker's host would
produce next to benign ones.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from fleetctl.packs.loader import load_file, pack_files, shipped_packs_dir
from fleetctl.packs.model import Pack
from fleetctl.packs.validate import validate_paths
from fleetctl.schema import default_schema

PACK_NAMES = [
    "ipc-telemetry",
    "ipc-telemetry-extension",
    "ipc-telemetry-macos",
    "ipc-telemetry-windows",
    "t1559-hunts",
    "telemetry-health",
]


def shipped() -> dict[str, Pack]:
    return {p.name: p for f in pack_files([shipped_packs_dir()]) for p in load_file(f)}


def test_every_shipped_pack_validates() -> None:
    report = validate_paths([shipped_packs_dir()])
    assert report.errors == []
    assert (report.files, report.packs) == (6, 6)
    assert sorted(shipped()) == PACK_NAMES


def test_every_query_says_what_it_collects_and_why() -> None:
    for pack in shipped().values():
        for query in pack.queries:
            assert query.description and query.value, f"{pack.name}/{query.name}"
            kind = "Snapshot" if query.snapshot else "Differential"
            assert kind in query.description, f"{pack.name}/{query.name}"


def test_high_volume_detection_queries_are_differential_with_removals() -> None:
    """The process and channel queries a host runs every minute or few send only what
    changed (a baseline at counter 0, then added and removed rows): as snapshots they
    resend every row of every process each run. Removals must be logged, or the server
    would keep exited processes. The Windows pipe list keeps its snapshot twin."""
    packs = shipped()
    queries = {(p.name, q.name): q for p in packs.values() for q in p.queries}
    for key in [
        ("ipc-telemetry", "process_lineage"),
        ("ipc-telemetry", "process_lineage_darwin"),
        ("ipc-telemetry", "pipe_partners"),
        ("ipc-telemetry", "stdio_channels"),
        ("ipc-telemetry-extension", "process_stdio"),
        ("ipc-telemetry-extension", "unix_socket_peers"),
        ("ipc-telemetry-windows", "process_lineage"),
    ]:
        assert not queries[key].snapshot, key
        assert queries[key].removed, key
    assert queries[("ipc-telemetry-windows", "named_pipes_snapshot")].snapshot
    assert not queries[("ipc-telemetry-windows", "named_pipes")].snapshot


EXTENSION_DISCOVERY = (
    "SELECT 1 FROM osquery_registry WHERE registry = 'table' AND name = 'process_stdio'",
    "SELECT 1 FROM osquery_registry WHERE registry = 'table' AND name = 'unix_socket_peers'",
)
MACOS_DISCOVERY = (
    "SELECT 1 FROM osquery_flags WHERE name = 'disable_events' AND value = 'false'",
    "SELECT 1 FROM osquery_flags WHERE name = 'disable_endpointsecurity' AND value = 'false'",
)


def test_packs_that_depend_on_optional_sources_have_discovery() -> None:
    packs = shipped()
    assert packs["ipc-telemetry-extension"].discovery == EXTENSION_DISCOVERY
    assert packs["ipc-telemetry-macos"].discovery == MACOS_DISCOVERY
    extension_tables = {t.name for t in default_schema().tables.values() if t.extension}
    for pack in packs.values():
        if pack.name != "ipc-telemetry-extension":
            assert not any(t in q.query for q in pack.queries for t in extension_tables)


def test_discovery_asks_osquery_about_itself_not_the_gated_tables() -> None:
    """Discovery reads osquery's registry and flags: whether a pack runs must not depend
    on an extension table answering or on an event having arrived in the last interval."""
    schema = default_schema()
    for pack, platform, reads in [
        ("ipc-telemetry-extension", "linux", {"osquery_registry"}),
        ("ipc-telemetry-macos", "darwin", {"osquery_flags"}),
    ]:
        for sql in shipped()[pack].discovery:
            compiled = schema.compile(sql, platform)
            assert compiled.error is None, sql
            assert compiled.tables == reads, sql


def test_telemetry_health_reads_osquerys_own_state() -> None:
    health = shipped()["telemetry-health"]
    tables: set[str] = set()
    for query in health.queries:
        compiled = default_schema().compile(query.query)
        assert compiled.error is None, query.name
        tables |= compiled.tables
    assert {"osquery_info", "osquery_flags", "osquery_schedule", "osquery_events"} <= tables
    assert {"osquery_registry", "osquery_extensions", "osquery_packs"} <= tables
    flags = health.query("event_flags").query
    for flag in (
        "disable_events", "disable_audit", "audit_allow_process_events", "audit_allow_sockets",
        "disable_endpointsecurity", "enable_process_etw_events",
    ):  # fmt: skip
        assert f"'{flag}'" in flags, flag
    schedule = health.query("schedule_health").query
    for column in ("executions", "denylisted", "last_executed", "wall_time", "output_size"):
        assert column in schedule, column


def test_windows_pack_reads_registry_and_wmi_tables() -> None:
    compiled = [
        default_schema().compile(q.query, "windows")
        for q in shipped()["ipc-telemetry-windows"].queries
    ]
    tables = set().union(*(c.tables for c in compiled))
    assert {
        "registry", "wmi_cli_event_consumers", "wmi_script_event_consumers",
        "wmi_event_filters", "wmi_filter_consumer_binding",
    } <= tables  # fmt: skip


@pytest.fixture
def windows() -> Iterator[sqlite3.Connection]:
    yield from _plain_db("windows")


@pytest.fixture
def linux() -> Iterator[sqlite3.Connection]:
    yield from _plain_db("linux")


@pytest.fixture
def darwin() -> Iterator[sqlite3.Connection]:
    yield from _plain_db("darwin")


def _plain_db(platform: str) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:")
    for table in default_schema().tables_on(platform).values():
        cols = ", ".join(f'"{c.name}"' for c in table.columns_on(platform))
        conn.execute(f'CREATE TABLE "{table.name}" ({cols})')
    yield conn
    conn.close()


def insert(conn: sqlite3.Connection, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
    for row in rows:
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        conn.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", list(row.values()))


def run(conn: sqlite3.Connection, pack: str, query: str, column: str) -> list[Any]:
    cursor = conn.execute(shipped()[pack].query(query).query)
    names = [d[0] for d in cursor.description]
    return sorted(row[names.index(column)] for row in cursor.fetchall())


def test_known_tool_pipes_match_the_sigma_list_only(windows: sqlite3.Connection) -> None:
    matching = [
        "postex_8a4f", "status_12", "msagent_ab", "mojo_x", "interprocess_3", "samr_1",
        "netlogon_2", "srvsvc_3", "lsarpc_4", "wkssvc_5", "MSSE-1234-server", "svcctl",
        "gruntsvc", "csexecsvc", "583da945-62af-10e8-4902-a8f205c72b2e", "PAExec",
        "RemCom_communicaton", "lsadump", "cachedump", "wceservicepipe",
        "PSHost.133456.4321.DefaultAppDomain.powershell",
    ]  # fmt: skip
    benign = [
        "mojo.5678.1234.998877", "samr", "netlogon", "lsass", "spoolss", "postexfoo",
        "MSSE-1234-client", "PAExec-4242-host", "wkssvc",
    ]  # fmt: skip
    insert(windows, "pipes", [{"name": n, "pid": 4} for n in matching + benign])
    assert run(windows, "t1559-hunts", "known_tool_pipes", "name") == sorted(matching)


def test_office_interpreter_chains(windows: sqlite3.Connection) -> None:
    insert(
        windows,
        "processes",
        [
            {"pid": 10, "parent": 1, "name": "WINWORD.EXE"},
            {"pid": 11, "parent": 10, "name": "cmd.exe"},
            {"pid": 12, "parent": 11, "name": "powershell.exe"},
            {"pid": 13, "parent": 12, "name": "certutil.exe"},
            {"pid": 20, "parent": 1, "name": "explorer.exe"},
            {"pid": 21, "parent": 20, "name": "cmd.exe"},
            {"pid": 30, "parent": 1, "name": "EXCEL.EXE"},
            {"pid": 31, "parent": 30, "name": "splwow64.exe"},
        ],
    )
    assert run(windows, "t1559-hunts", "office_interpreter_chains", "pid") == [11, 12]
    assert run(windows, "ipc-telemetry-windows", "office_lolbin_children", "pid") == [11]


def test_office_lolbin_starts_match_full_paths(windows: sqlite3.Connection) -> None:
    insert(windows, "processes", [{"pid": 10, "parent": 1, "name": "EXCEL.EXE"}])
    insert(
        windows,
        "process_etw_events",
        [
            {"type": "ProcessStart", "pid": 40, "ppid": 10, "path": r"C:\Windows\System32\cmd.exe"},
            {"type": "ProcessStart", "pid": 41, "ppid": 10, "path": r"C:\Tools\notcmd.exe"},
            {
                "type": "ProcessStop",
                "pid": 42,
                "ppid": 10,
                "path": r"C:\Windows\System32\mshta.exe",
            },
            {"type": "ProcessStart", "pid": 43, "ppid": 99, "path": r"C:\Windows\System32\cmd.exe"},
        ],
    )
    assert run(windows, "ipc-telemetry-windows", "office_lolbin_starts", "pid") == [40]


def _linux_host(conn: sqlite3.Connection) -> None:
    """Scenario 7 (sh on a /dev/shm FIFO), 1 (cat FIFO | sh), 2 (/dev/tcp bash), 3 (socat).

    Sockets as osquery's process_open_sockets lists them: once, at the highest fd of the
    holder (bash -i on /dev/tcp holds its socket as fds 0-2 and 255; socat's shell as
    fds 0 and 1)."""
    insert(
        conn,
        "processes",
        [
            {"pid": 1, "parent": 0, "name": "systemd", "path": "/usr/lib/systemd/systemd"},
            {"pid": 50, "parent": 1, "name": "bash", "path": "/usr/bin/bash"},
            {"pid": 100, "parent": 50, "name": "sh", "path": "/usr/bin/dash"},
            {"pid": 110, "parent": 50, "name": "cat", "path": "/usr/bin/cat"},
            {"pid": 111, "parent": 50, "name": "sh", "path": "/usr/bin/dash"},
            {"pid": 200, "parent": 50, "name": "bash", "path": "/usr/bin/bash"},
            {"pid": 300, "parent": 1, "name": "socat", "path": "/usr/bin/socat"},
            {"pid": 301, "parent": 300, "name": "sh", "path": "/usr/bin/dash"},
            {"pid": 400, "parent": 1, "name": "sshd", "path": "/usr/sbin/sshd"},
            {"pid": 401, "parent": 400, "name": "bash", "path": "/usr/bin/bash"},
        ],
    )
    insert(
        conn,
        "process_open_pipes",
        [
            {"pid": 100, "fd": 0, "mode": "rw", "inode": 7, "type": "named"},
            {"pid": 110, "fd": 3, "mode": "r", "inode": 8, "type": "named"},
            {"pid": 110, "fd": 1, "mode": "w", "inode": 9, "type": "anonymous",
             "partner_pid": 111, "partner_fd": 0, "partner_mode": "r"},
            {"pid": 111, "fd": 0, "mode": "r", "inode": 9, "type": "anonymous",
             "partner_pid": 110, "partner_fd": 1, "partner_mode": "w"},
        ],
    )  # fmt: skip
    insert(
        conn,
        "process_open_files",
        [
            {"pid": 50, "fd": 0, "path": "/dev/pts/1"},
            {"pid": 100, "fd": 0, "path": "/dev/shm/.c"},
            {"pid": 110, "fd": 3, "path": "/tmp/f"},
            *({"pid": 300, "fd": fd, "path": "/dev/null"} for fd in (0, 1, 2)),
            {"pid": 301, "fd": 2, "path": "/dev/null"},
            {"pid": 401, "fd": 0, "path": "/dev/pts/0"},
        ],
    )
    insert(
        conn,
        "process_open_sockets",
        [
            {"pid": 200, "fd": 255, "family": 2, "protocol": 6, "remote_address": "127.0.0.1",
             "remote_port": 4446, "local_address": "127.0.0.1", "local_port": 51000},
            {"pid": 301, "fd": 1, "family": 1, "protocol": 0, "path": ""},
            {"pid": 400, "fd": 0, "family": 2, "protocol": 6, "remote_address": "10.0.0.5",
             "remote_port": 50000, "local_address": "10.0.0.1", "local_port": 22},
            {"pid": 401, "fd": 5, "family": 1, "protocol": 0, "path": ""},
            {"pid": 300, "fd": 5, "family": 1, "protocol": 0, "path": "/tmp/ipc.sock"},
        ],
    )  # fmt: skip


def test_shell_stdin_hunts(linux: sqlite3.Connection) -> None:
    _linux_host(linux)
    assert run(linux, "t1559-hunts", "shell_stdin_fifo", "fifo_path") == ["/dev/shm/.c"]
    assert run(linux, "t1559-hunts", "shell_stdin_from_fifo_reader", "pid") == [111]
    assert run(linux, "t1559-hunts", "shell_stdin_from_fifo_reader", "fifo_path") == ["/tmp/f"]
    # Never fd 0: stdin that no file or pipe row explains, with the socket osquery listed.
    assert run(linux, "t1559-hunts", "shell_stdin_socket", "pid") == [200, 301]
    assert run(linux, "t1559-hunts", "shell_stdin_socket", "socket_fd") == [1, 255]
    assert run(linux, "t1559-hunts", "socat_ncat_children", "pid") == [301]


def test_named_fifos_and_stdio_channels(linux: sqlite3.Connection) -> None:
    _linux_host(linux)
    assert run(linux, "ipc-telemetry", "named_fifos", "path") == ["/dev/shm/.c", "/tmp/f"]
    cursor = linux.execute(shipped()["ipc-telemetry"].query("stdio_channels").query)
    names = [d[0] for d in cursor.description]
    channels = sorted(
        (
            r[names.index("pid")],
            r[names.index("fd")],
            r[names.index("kind")],
            r[names.index("target")],
        )
        for r in cursor.fetchall()
    )
    assert channels == [
        (50, 0, "path", "/dev/pts/1"),
        (100, 0, "fifo", ""),
        (100, 0, "path", "/dev/shm/.c"),
        (110, 1, "pipe", ""),
        (111, 0, "pipe", ""),
        # its only socket, above fd 2: returned because nothing explains its stdio
        (200, 255, "tcp", "127.0.0.1:51000->127.0.0.1:4446"),
        (300, 0, "path", "/dev/null"),
        (300, 1, "path", "/dev/null"),
        (300, 2, "path", "/dev/null"),
        (301, 1, "unix", ""),
        (301, 2, "path", "/dev/null"),
        (400, 0, "tcp", "10.0.0.1:22->10.0.0.5:50000"),
        (401, 0, "path", "/dev/pts/0"),
    ]


def test_unix_socket_events_keep_binds_and_connects_of_running_processes(
    linux: sqlite3.Connection,
) -> None:
    insert(
        linux,
        "processes",
        [
            {"pid": 400, "parent": 1, "name": "python3", "path": "/usr/bin/python3",
             "start_time": 1000},
            {"pid": 500, "parent": 1, "name": "socat", "path": "/usr/bin/socat",
             "start_time": 900},
        ],
    )  # fmt: skip
    event = {"family": 1, "status": "succeeded", "time": 1005}
    insert(
        linux,
        "socket_events",
        [
            {**event, "pid": 400, "fd": "3", "action": "connect", "socket": "/tmp/p.sock"},
            {**event, "pid": 500, "fd": "5", "action": "bind", "socket": "/tmp/p.sock"},
            {**event, "pid": 500, "fd": "6", "action": "accept", "socket": "/tmp/p.sock"},
            {**event, "pid": 400, "fd": "4", "action": "connect", "family": 2, "socket": ""},
            {**event, "pid": 400, "fd": "5", "action": "connect", "time": 10, "socket": "/old"},
        ],
    )
    found = [
        (r["pid"], r["action"], r["path"], r["fd"])
        for r in rows(linux, "ipc-telemetry", "unix_socket_events")
    ]
    assert sorted(found) == [
        (400, "connect", "/tmp/p.sock", "3"),
        (500, "bind", "/tmp/p.sock", "5"),
    ]


def test_shell_stdin_socket_on_macos_reads_fd_0(darwin: sqlite3.Connection) -> None:
    """macOS's process_open_sockets has one row per descriptor: fd 0 is there."""
    insert(
        darwin,
        "processes",
        [
            {"pid": 1, "parent": 0, "name": "launchd", "path": "/sbin/launchd"},
            {"pid": 10, "parent": 1, "name": "zsh", "path": "/bin/zsh"},
            {"pid": 11, "parent": 1, "name": "zsh", "path": "/bin/zsh"},
        ],
    )
    insert(
        darwin,
        "process_open_sockets",
        [
            {"pid": 10, "fd": 0, "family": 1, "protocol": 0, "path": "/tmp/s"},
            {"pid": 10, "fd": 1, "family": 1, "protocol": 0, "path": "/tmp/s"},
            {"pid": 11, "fd": 5, "family": 1, "protocol": 0, "path": "/tmp/s"},
        ],
    )
    assert run(darwin, "t1559-hunts", "shell_stdin_socket_macos", "pid") == [10]


def rows(conn: sqlite3.Connection, pack: str, query: str) -> list[dict[str, Any]]:
    cursor = conn.execute(shipped()[pack].query(query).query)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def discovers(conn: sqlite3.Connection, pack: str) -> bool:
    """osqueryd's rule: a pack is active when every discovery query returns a row."""
    return all(conn.execute(sql).fetchall() for sql in shipped()[pack].discovery)


def test_extension_pack_is_active_only_when_both_tables_are_registered(
    linux: sqlite3.Connection,
) -> None:
    core = [{"registry": "table", "name": "processes", "owner_uuid": 0, "internal": 0}]
    insert(linux, "osquery_registry", core)
    assert not discovers(linux, "ipc-telemetry-extension")
    extension = {"registry": "table", "owner_uuid": 7, "internal": 0, "active": 1}
    insert(linux, "osquery_registry", [{**extension, "name": "process_stdio"}])
    assert not discovers(linux, "ipc-telemetry-extension")
    insert(linux, "osquery_registry", [{**extension, "name": "unix_socket_peers"}])
    assert discovers(linux, "ipc-telemetry-extension")


def test_macos_pack_is_active_only_with_endpointsecurity_enabled(
    darwin: sqlite3.Connection,
) -> None:
    insert(
        darwin,
        "osquery_flags",
        [
            {"name": "disable_events", "value": "false", "default_value": "true"},
            {"name": "disable_endpointsecurity", "value": "true", "default_value": "true"},
        ],
    )
    assert not discovers(darwin, "ipc-telemetry-macos")
    darwin.execute("UPDATE osquery_flags SET value = 'false'")
    assert discovers(darwin, "ipc-telemetry-macos")
    darwin.execute("UPDATE osquery_flags SET value = 'true' WHERE name = 'disable_events'")
    assert not discovers(darwin, "ipc-telemetry-macos")


def test_health_reports_stale_and_denylisted_queries_and_extension_tables(
    linux: sqlite3.Connection,
) -> None:
    insert(linux, "time", [{"unix_time": 10_000}])
    insert(
        linux,
        "osquery_schedule",
        [
            {"name": "pack_ipc-telemetry_process_lineage", "interval": 60, "executions": 90,
             "last_executed": 9_950, "denylisted": 0, "output_size": 1_000, "wall_time": 3},
            {"name": "pack_ipc-telemetry_stdio_channels", "interval": 120, "executions": 4,
             "last_executed": 2_000, "denylisted": 1, "output_size": 10, "wall_time": 9},
        ],
    )  # fmt: skip
    stale = {
        r["name"]: r["seconds_since_last_run"]
        for r in rows(linux, "telemetry-health", "schedule_health")
    }
    assert stale == {
        "pack_ipc-telemetry_process_lineage": 50,
        "pack_ipc-telemetry_stdio_channels": 8_000,
    }
    assert run(linux, "telemetry-health", "denylisted_queries", "name") == [
        "pack_ipc-telemetry_stdio_channels"
    ]
    insert(
        linux,
        "osquery_registry",
        [
            {"registry": "table", "name": "processes", "owner_uuid": 0, "internal": 1},
            {"registry": "table", "name": "process_stdio", "owner_uuid": 7, "internal": 0,
             "active": 1},
            {"registry": "config", "name": "tls", "owner_uuid": 0, "internal": 0},
        ],
    )  # fmt: skip
    insert(linux, "osquery_extensions", [{"uuid": 7, "name": "fleetctl", "version": "0.1.0"}])
    assert rows(linux, "telemetry-health", "extension_tables") == [
        {"table_name": "process_stdio", "active": 1, "extension": "fleetctl",
         "version": "0.1.0", "sdk_version": None}
    ]  # fmt: skip


def test_office_dde_settings_flag_values_that_allow_dde(windows: sqlite3.Connection) -> None:
    sid = "S-1-5-21-1111-2222-3333-1001"
    word = rf"HKEY_USERS\{sid}\Software\Microsoft\Office\16.0\Word\Security"
    excel = rf"HKEY_USERS\{sid}\Software\Microsoft\Office\16.0\Excel\Security"
    policy = rf"HKEY_USERS\{sid}\Software\Policies\Microsoft\Office\16.0\Word\Security"
    insert(
        windows,
        "registry",
        [
            {"key": word, "name": "AllowDDE", "data": "2"},
            {"key": word, "name": "VBAWarnings", "data": "1"},
            {"key": excel, "name": "DisableDDEServerLaunch", "data": "0"},
            {"key": excel, "name": "DisableDDEServerLookup", "data": "1"},
            {"key": policy, "name": "AllowDDE", "data": "0"},
        ],
    )
    found = sorted(
        (r["sid"], r["app"], r["name"], r["data"], r["dde_enabled"])
        for r in rows(windows, "ipc-telemetry-windows", "office_dde_settings")
    )
    assert found == [
        (sid, "excel", "DisableDDEServerLaunch", "0", 1),
        (sid, "excel", "DisableDDEServerLookup", "1", 0),
        (sid, "word", "AllowDDE", "0", 0),
        (sid, "word", "AllowDDE", "2", 1),
    ]


def test_com_servers_in_user_writable_paths_and_treat_as(windows: sqlite3.Connection) -> None:
    user = r"HKEY_USERS\S-1-5-21-1-2-3-1001\SOFTWARE\Classes\CLSID"
    machine = r"HKEY_LOCAL_MACHINE\SOFTWARE\Classes\CLSID"
    insert(
        windows,
        "registry",
        [
            {"key": rf"{user}\{{A}}\InprocServer32", "name": "(Default)",
             "data": r"C:\Users\bob\AppData\Roaming\evil.dll"},
            {"key": rf"{user}\{{A}}\InprocServer32", "name": "ThreadingModel",
             "data": r"C:\Users\bob\AppData\Roaming\evil.dll"},
            {"key": rf"{user}\{{B}}\LocalServer32", "name": "(Default)",
             "data": r"%TEMP%\x.exe -Embedding"},
            {"key": rf"{machine}\{{C}}\InprocServer32", "name": "(Default)",
             "data": r"C:\Windows\System32\shell32.dll"},
            {"key": rf"{machine}\{{D}}\LocalServer32", "name": "(Default)",
             "data": r"C:\ProgramData\upd\svc.exe"},
            {"key": rf"{machine}\{{E}}\InprocServer32", "name": "(Default)",
             "data": r"C:\Users\Public\x.dll"},
            {"key": rf"{machine}\{{F}}\InprocServer32", "name": "(Default)",
             "data": r"C:\Program Files\Templates\t.dll"},
            {"key": rf"{user}\{{G}}\TreatAs", "name": "(Default)", "data": "{A}"},
            {"key": rf"{machine}\{{H}}\TreatAs", "name": "(Default)", "data": "{C}"},
        ],
    )  # fmt: skip
    hijacks = sorted(
        (r["scope"], r["key"].rsplit("\\", 2)[-2])
        for r in rows(windows, "ipc-telemetry-windows", "com_servers_user_writable")
    )
    assert hijacks == [("machine", "{D}"), ("machine", "{E}"), ("user", "{A}"), ("user", "{B}")]
    treat_as = sorted(
        (r["scope"], r["treat_as_clsid"])
        for r in rows(windows, "ipc-telemetry-windows", "com_treat_as")
    )
    assert treat_as == [("machine", "{C}"), ("user", "{A}")]


def test_wmi_subscriptions_resolve_filter_and_consumer(windows: sqlite3.Connection) -> None:
    insert(
        windows,
        "wmi_event_filters",
        [{"name": "f", "query": "SELECT * FROM __InstanceCreationEvent", "relative_path":
          '__EventFilter.Name="f"'}],
    )  # fmt: skip
    insert(
        windows,
        "wmi_script_event_consumers",
        [{"name": "s", "scripting_engine": "VBScript", "script_text": "CreateObject(1)",
          "relative_path": 'ActiveScriptEventConsumer.Name="s"'}],
    )  # fmt: skip
    insert(
        windows,
        "wmi_cli_event_consumers",
        [{"name": "c", "command_line_template": "cmd /c calc",
          "relative_path": 'CommandLineEventConsumer.Name="c"'}],
    )  # fmt: skip
    insert(
        windows,
        "wmi_filter_consumer_binding",
        [
            {"filter": '__EventFilter.Name="f"', "consumer": 'ActiveScriptEventConsumer.Name="s"'},
            {"filter": '__EventFilter.Name="f"', "consumer": 'CommandLineEventConsumer.Name="c"'},
        ],
    )
    found = {
        (r["filter_name"], r["script_consumer"], r["cli_consumer"], r["command_line_template"])
        for r in rows(windows, "ipc-telemetry-windows", "wmi_subscriptions")
    }
    assert found == {("f", None, "c", "cmd /c calc"), ("f", "s", None, None)}


def test_launchd_mach_services_come_from_job_plists(darwin: sqlite3.Connection) -> None:
    daemon = "/Library/LaunchDaemons/com.example.helper.plist"
    agent = "/Users/bob/Library/LaunchAgents/com.evil.agent.plist"
    insert(
        darwin,
        "plist",
        [
            {"path": daemon, "key": "Label", "subkey": "", "value": "com.example.helper"},
            {"path": daemon, "key": "MachServices", "subkey": "com.example.helper.xpc",
             "value": "true"},
            {"path": agent, "key": "MachServices", "subkey": "com.evil.port/ResetAtClose",
             "value": "true"},
            {"path": "/System/Library/LaunchDaemons/com.apple.x.plist", "key": "MachServices",
             "subkey": "com.apple.x", "value": "true"},
        ],
    )  # fmt: skip
    insert(
        darwin,
        "launchd",
        [{"path": daemon, "label": "com.example.helper", "program": "/Library/Helper/h"}],
    )
    found = sorted(
        (r["mach_service"], r["label"])
        for r in rows(darwin, "ipc-telemetry", "launchd_mach_services")
    )
    assert found == [
        ("com.evil.port/ResetAtClose", None),
        ("com.example.helper.xpc", "com.example.helper"),
    ]
