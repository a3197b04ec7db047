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
from fleetctl.packs.schema import default_schema
from fleetctl.packs.validate import validate_paths

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


def test_whole_picture_queries_are_snapshots() -> None:
    packs = shipped()
    snapshots = {(p.name, q.name) for p in packs.values() for q in p.queries if q.snapshot}
    for expected in [
        ("ipc-telemetry", "process_lineage"),
        ("ipc-telemetry", "process_lineage_darwin"),
        ("ipc-telemetry", "pipe_partners"),
        ("ipc-telemetry", "stdio_channels"),
        ("ipc-telemetry-extension", "process_stdio"),
        ("ipc-telemetry-windows", "process_lineage"),
        ("ipc-telemetry-windows", "named_pipes_snapshot"),
    ]:
        assert expected in snapshots
    assert ("ipc-telemetry-windows", "named_pipes") not in snapshots


def test_packs_that_depend_on_optional_sources_have_discovery() -> None:
    packs = shipped()
    assert packs["ipc-telemetry-extension"].discovery == (
        "SELECT COUNT(*) AS tables FROM process_stdio WHERE pid = (SELECT pid FROM osquery_info)",
    )
    assert packs["ipc-telemetry-macos"].discovery == ("SELECT 1 FROM es_process_events LIMIT 1",)
    extension_tables = {t.name for t in default_schema().tables.values() if t.extension}
    for pack in packs.values():
        if pack.name != "ipc-telemetry-extension":
            assert not any(t in q.query for q in pack.queries for t in extension_tables)


@pytest.fixture
def windows() -> Iterator[sqlite3.Connection]:
    yield from _plain_db("windows")


@pytest.fixture
def linux() -> Iterator[sqlite3.Connection]:
    yield from _plain_db("linux")


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
    """Scenario 7 (sh on a /dev/shm FIFO), 1 (cat FIFO | sh), 2 (/dev/tcp bash), 3 (socat)."""
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
            {"pid": 100, "fd": 0, "path": "/dev/shm/.c"},
            {"pid": 110, "fd": 3, "path": "/tmp/f"},
            {"pid": 401, "fd": 0, "path": "/dev/pts/0"},
        ],
    )
    insert(
        conn,
        "process_open_sockets",
        [
            {"pid": 200, "fd": 0, "family": 2, "protocol": 6, "remote_address": "127.0.0.1",
             "remote_port": 4446, "local_address": "127.0.0.1", "local_port": 51000},
            {"pid": 200, "fd": 1, "family": 2, "protocol": 6, "remote_address": "127.0.0.1",
             "remote_port": 4446, "local_address": "127.0.0.1", "local_port": 51000},
            {"pid": 301, "fd": 0, "family": 1, "protocol": 0, "path": ""},
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
    assert run(linux, "t1559-hunts", "shell_stdin_socket", "pid") == [200, 301]
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
        (100, 0, "fifo", ""),
        (100, 0, "path", "/dev/shm/.c"),
        (110, 1, "pipe", ""),
        (111, 0, "pipe", ""),
        (200, 0, "tcp", "127.0.0.1:51000->127.0.0.1:4446"),
        (200, 1, "tcp", "127.0.0.1:51000->127.0.0.1:4446"),
        (301, 0, "unix", ""),
        (400, 0, "tcp", "10.0.0.1:22->10.0.0.5:50000"),
        (401, 0, "path", "/dev/pts/0"),
    ]
