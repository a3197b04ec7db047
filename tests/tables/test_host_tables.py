"""Single-host tables checked against independent sources (libc, uname, ip, /proc)."""

from __future__ import annotations

import grp
import ipaddress
import json
import os
import platform
import pwd
import socket
import subprocess
import time
from pathlib import Path

from fleetctl.tables import TABLES, Scan
from fleetctl.tables._etc import UtmpRecord, pack_utmp, signed32
from fleetctl.tables.runtime import (
    AgentRuntime,
    EventSource,
    FlagInfo,
    RegistryItem,
    ScheduledQueryStats,
)


def test_users_match_getpwall() -> None:
    rows = {r["username"]: r for r in TABLES["users"].rows()}
    for entry in pwd.getpwall():
        row = rows[entry.pw_name]
        assert (row["uid"], row["gid"], row["description"], row["directory"], row["shell"]) == (
            entry.pw_uid,
            entry.pw_gid,
            entry.pw_gecos,
            entry.pw_dir,
            entry.pw_shell,
        )
        assert row["uid_signed"] == signed32(entry.pw_uid)
    assert TABLES["users"].rows({"uid": {0}})[0]["username"] == pwd.getpwuid(0).pw_name
    assert [r["uid"] for r in TABLES["users"].rows({"username": {"root"}})] == [0]


def test_groups_match_getgrall() -> None:
    rows = {r["gid"]: r for r in TABLES["groups"].rows()}
    for entry in grp.getgrall():
        assert entry.gr_gid in rows
    assert rows[0]["groupname"] == grp.getgrgid(0).gr_name
    assert signed32(4294967294) == -2


def test_logged_in_users_from_utmp(tmp_path: Path) -> None:
    utmp = tmp_path / "utmp"
    utmp.write_bytes(
        b"".join(
            pack_utmp(r)
            for r in (
                UtmpRecord(2, 0, "~", "reboot", "6.1.0", 1700000000),  # boot_time
                UtmpRecord(7, 4242, "pts/0", "alice", "10.0.0.5", 1700000100),  # user
                UtmpRecord(8, 4243, "pts/1", "", "", 1700000200),  # dead
                UtmpRecord(1, 1, "~", "runlevel", "", 1700000000),  # pid 1: skipped
                UtmpRecord(42, 9, "x", "y", "", 1),  # unknown type
            )
        )
    )
    rows = TABLES["logged_in_users"].rows({}, Scan(utmp_path=str(utmp)))
    assert rows == [
        {
            "type": "boot_time",
            "user": "reboot",
            "tty": "~",
            "host": "6.1.0",
            "time": 1700000000,
            "pid": 0,
        },
        {
            "type": "user",
            "user": "alice",
            "tty": "pts/0",
            "host": "10.0.0.5",
            "time": 1700000100,
            "pid": 4242,
        },
        {"type": "dead", "user": "", "tty": "pts/1", "host": "", "time": 1700000200, "pid": 4243},
        {"type": "unknown", "user": "y", "tty": "x", "host": "", "time": 1, "pid": 9},
    ]
    assert TABLES["logged_in_users"].rows({}, Scan(utmp_path=str(tmp_path / "none"))) == []


def test_system_info() -> None:
    [row] = TABLES["system_info"].rows()
    assert row["hostname"] == socket.gethostname() == row["computer_name"]
    assert row["cpu_logical_cores"] == os.cpu_count()
    assert row["cpu_type"] == platform.machine()
    assert row["physical_memory"] == os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert row["uuid"]


def test_os_version_and_kernel_info() -> None:
    [os_row] = TABLES["os_version"].rows()
    release = platform.freedesktop_os_release()
    assert os_row["name"] == release["NAME"]
    assert os_row["platform"] == release["ID"]
    assert str(os_row["major"]) == release["VERSION_ID"].split(".")[0]
    assert os_row["arch"] == platform.machine()
    [kernel] = TABLES["kernel_info"].rows()
    assert kernel["version"] == os.uname().release
    assert kernel["arguments"] is not None


def test_uptime_and_time() -> None:
    [up] = TABLES["uptime"].rows()
    proc_uptime = float(Path("/proc/uptime").read_text().split()[0])
    assert abs(up["total_seconds"] - proc_uptime) <= 2
    assert (
        up["days"] * 86400 + up["hours"] * 3600 + up["minutes"] * 60 + up["seconds"]
        == (up["total_seconds"])
    )
    [now] = TABLES["time"].rows()
    assert abs(now["unix_time"] - time.time()) <= 2
    gmt = time.gmtime(now["unix_time"])
    assert (now["year"], now["month"], now["day"]) == (gmt.tm_year, gmt.tm_mon, gmt.tm_mday)
    assert now["timestamp"] == time.asctime(gmt) + " UTC"
    assert now["datetime"] == now["iso_8601"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", gmt)


def test_interface_addresses_match_ip_addr() -> None:
    out = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True).stdout
    expected = set()
    for link in json.loads(out):
        for addr in link.get("addr_info", []):
            if addr["family"] in ("inet", "inet6"):
                local = addr["local"]
                if addr["family"] == "inet6" and local.startswith("fe80"):
                    local += "%" + link["ifname"]
                expected.add((addr.get("label", link["ifname"]), local, addr["prefixlen"]))
    got = set()
    for row in TABLES["interface_addresses"].rows():
        prefix = bin(int(ipaddress.ip_address(row["mask"]))).count("1")
        got.add((row["interface"], row["address"], prefix))
    assert got == expected
    lo = next(r for r in TABLES["interface_addresses"].rows() if r["address"] == "127.0.0.1")
    assert (lo["interface"], lo["mask"], lo["type"]) == ("lo", "255.0.0.0", "unknown")


def test_osquery_tables_report_the_runtime() -> None:
    runtime = AgentRuntime(
        host_uuid="11111111-2222-3333-4444-555555555555",
        config_hash="abc",
        config_valid=True,
        extensions="active",
        flags={
            "distributed_interval": FlagInfo("distributed_interval", "60", "60", "int32"),
            "x": FlagInfo("x", "1"),
        },
        schedule=[
            ScheduledQueryStats("pack_ipc_stdio", "SELECT 1", 300, executions=2, wall_time_ms=2500)
        ],
        registry=[RegistryItem("table", "process_stdio", owner_uuid=7)],
        events=[EventSource("inotify", "inotify", "publisher", active=True)],
    )
    scan = Scan(runtime=runtime)
    [info] = TABLES["osquery_info"].rows({}, scan)
    assert info["version"] == "0.1.0"
    assert (info["uuid"], info["config_hash"], info["config_valid"], info["extensions"]) == (
        "11111111-2222-3333-4444-555555555555",
        "abc",
        1,
        "active",
    )
    assert info["platform_mask"] == 9 and info["pid"] == os.getpid()
    assert [f["name"] for f in TABLES["osquery_flags"].rows({}, scan)] == ["distributed_interval"]
    [sched] = TABLES["osquery_schedule"].rows({}, scan)
    assert (
        sched["name"],
        sched["interval"],
        sched["executions"],
        sched["wall_time"],
        sched["wall_time_ms"],
        sched["denylisted"],
    ) == ("pack_ipc_stdio", 300, 2, 2, 2500, 0)
    assert TABLES["osquery_registry"].rows({}, scan) == [
        {"registry": "table", "name": "process_stdio", "owner_uuid": 7, "internal": 0, "active": 1}
    ]
    assert TABLES["osquery_events"].rows({}, scan)[0]["active"] == 1
    default = TABLES["osquery_registry"].rows()
    assert {r["name"] for r in default if r["registry"] == "table"} == set(TABLES)
