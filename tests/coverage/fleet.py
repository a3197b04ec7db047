"""A fixture fleet of the three platforms with full, partial and no IPC telemetry, fed
through the real server as osqueryd feeds it: enrollment with host details, then result
log lines (snapshots and differential events) of the shipped packs' queries, with rows
shaped as osqueryd reports them there (every value a string, NULL as "", the columns
each pack query selects: ``test_fixture_rows_have_the_pack_queries_columns`` checks
them against osquery's schema).

Flag names and values are osquery's (``osquery_flags``: ``disable_events``,
``disable_audit``, ``disable_endpointsecurity``, ``enable_process_etw_events``, bools as
"true"/"false"); ``osquery_events`` names publishers and subscribers as osqueryd
registers them (``auditeventpublisher`` -> ``process_events``, ``endpointsecurity`` ->
``es_process_events``, ``etw_process_publisher`` -> ``process_etw_events``) with
``type`` ``publisher`` or ``subscriber``. See tests/fixtures/SOURCES.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.conftest import RunningServer
from tests.detection.rows import proc
from tests.detection.test_windows_macos import win_process
from tests.osquery_node import OsqueryNode

DAY = 86400
PLATFORM_TYPES = {"linux": "9", "darwin": "21", "windows": "2"}
OS = {
    "linux": ("Ubuntu", "22.04", "ubuntu"),
    "darwin": ("macOS", "14.5", "darwin"),
    "windows": ("Microsoft Windows 11 Pro", "10.0.22631", "windows"),
}
Row = dict[str, str]


class PlatformNode(OsqueryNode):
    """An osqueryd of ``platform`` as it enrolls (os_version.platform, platform_type)."""

    def __init__(self, server: RunningServer, identifier: str, platform: str) -> None:
        super().__init__(
            server.url,
            server.ca,
            server.secret,
            identifier,
            f"uuid-{identifier}",
            platform_type=PLATFORM_TYPES[platform],
        )
        server.clients.append(self.http)
        self.platform = platform

    def host_details(self) -> dict[str, Any]:
        name, version, platform = OS[self.platform]
        return {
            "os_version": {"name": name, "version": version, "platform": platform},
            "osquery_info": {"version": "5.12.1", "build_platform": self.platform},
            "system_info": {"uuid": self.uuid, "hostname": self.identifier},
        }


@dataclass
class Lines:
    """Result log lines of one host, in the order they are sent."""

    host: str
    lines: list[dict[str, Any]] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)

    def snapshot(self, pack: str, query: str, rows: list[Row], at: int) -> None:
        self.lines.append(
            {
                "name": f"pack_{pack}_{query}",
                "hostIdentifier": self.host,
                "calendarTime": time.strftime("%a %b %d %H:%M:%S %Y UTC", time.gmtime(at)),
                "unixTime": at,
                "epoch": 0,
                "counter": 0,
                "numerics": False,
                "snapshot": rows,
                "action": "snapshot",
            }
        )

    def added(
        self, pack: str, query: str, rows: list[Row], at: int, counter: int | None = None
    ) -> None:
        """A differential run's added rows (the counter goes on from the last run)."""
        name = f"pack_{pack}_{query}"
        n = self.counters.get(name, -1) + 1 if counter is None else counter
        self.counters[name] = n
        for row in rows:
            self.lines.append(
                {
                    "name": name,
                    "hostIdentifier": self.host,
                    "unixTime": at,
                    "epoch": 0,
                    "counter": n,
                    "numerics": False,
                    "columns": row,
                    "action": "added",
                }
            )


def flag(name: str, value: str, default: str) -> Row:
    return {"name": name, "value": value, "default_value": default, "type": "bool"}


def events(publisher: str, subscriber: str, active: bool, count: int) -> list[Row]:
    on = "1" if active else "0"
    return [
        {
            "name": publisher,
            "publisher": publisher,
            "type": "publisher",
            "subscriptions": "1" if active else "0",
            "events": str(count),
            "refreshes": "0",
            "active": on,
        },
        {
            "name": subscriber,
            "publisher": publisher,
            "type": "subscriber",
            "subscriptions": "1" if active else "0",
            "events": str(count),
            "refreshes": "0",
            "active": on,
        },
    ]


def schedule(
    names: Iterable[str], now: int, denylisted: Iterable[str] = (), stuck: Iterable[str] = ()
) -> list[Row]:
    """osquery_schedule rows (telemetry-health/schedule_health) of pack queries; the
    ``stuck`` ones never executed."""
    denied, never = set(denylisted), set(stuck)
    return [
        {
            "name": f"pack_{name.replace('/', '_')}",
            "interval": "60",
            "executions": "0" if name in never else "120",
            "last_executed": "0" if name in never else str(now - 30),
            "seconds_since_last_run": str(now) if name in never else "30",
            "denylisted": "1" if name in denied else "0",
            "output_size": "4096",
            "wall_time": "1",
            "wall_time_ms": "1200",
            "last_wall_time_ms": "10",
            "user_time": "300",
            "system_time": "100",
            "average_memory": "1024",
            "last_memory": "1024",
        }
        for name in names
    ]


def osquery_info(host: str, platform: str, now: int) -> Row:
    return {
        "version": "5.12.1",
        "config_hash": "c0ffee",
        "config_valid": "1",
        "extensions": "active",
        "build_platform": platform,
        "build_distro": "",
        "start_time": str(now - 5 * DAY),
        "watcher": "1",
        "instance_id": f"instance-{host}",
        "uuid": f"uuid-{host}",
        "uptime_seconds": str(6 * DAY),
        "unix_time": str(now),
    }


PARENTS = {
    "parent_start_time": "1699999990",
    "parent_name": "sshd",
    "parent_path": "/usr/sbin/sshd",
    "parent_cmdline": "sshd: alice",
    "grandparent_pid": "1",
    "grandparent_path": "/sbin/init",
    "grandparent_cmdline": "/sbin/init",
}


def posix_process(pid: int, parent: int, name: str, cmdline: str, darwin: bool = False) -> Row:
    """A row of ipc-telemetry/process_lineage (or process_lineage_darwin), its parent
    and grandparent resolved."""
    row = proc(pid, parent, f"/usr/bin/{name}", cmdline) | PARENTS
    row["grandparent_name"] = "launchd" if darwin else "systemd"
    if darwin:
        del row["cgroup_path"]
        row |= {"upid": str(pid), "uppid": str(parent)}
    return row


WINDOWS_TREE = {
    600: (4, "C:\\Windows\\System32\\wininit.exe", "wininit.exe"),
    700: (600, "C:\\Windows\\System32\\services.exe", "C:\\Windows\\system32\\services.exe"),
}


def windows_process(pid: int, parent: int, name: str) -> Row:
    """A row of ipc-telemetry-windows/process_lineage, its parent and grandparent resolved."""
    path = f"C:\\Windows\\System32\\{name}"
    return win_process(pid, parent, path, f"{path} -k netsvcs", table=WINDOWS_TREE)


def named_pipe(name: str, pid: int) -> Row:
    """A row of ipc-telemetry-windows/named_pipes_snapshot (``pipes``: -1 when osquery
    could not learn the server, with the joined process columns empty)."""
    known = pid > 0
    return {
        "name": name,
        "pid": str(pid),
        "instances": "2",
        "max_instances": "-1",
        "flags": "ACCESS_DUPLEX,TYPE_BYTE",
        "process_name": "svchost.exe" if known else "",
        "process_path": "C:\\Windows\\System32\\svchost.exe" if known else "",
        "process_cmdline": "svchost.exe -k RPCSS" if known else "",
    }


def pipe_partner(pid: int, partner: int) -> Row:
    return {
        "pid": str(pid),
        "name": "bash",
        "path": "/usr/bin/bash",
        "start_time": "1700000000",
        "fd": "0",
        "mode": "r",
        "inode": "4242",
        "type": "anonymous",
        "partner_pid": str(partner),
        "partner_name": "cat",
        "partner_path": "/usr/bin/cat",
        "partner_start_time": "1700000000",
        "partner_fd": "1",
        "partner_mode": "w",
    }


def unix_socket(pid: int, path: str) -> Row:
    return {
        "pid": str(pid),
        "name": "dbus-daemon",
        "process_path": "/usr/bin/dbus-daemon",
        "cmdline": "dbus-daemon --system",
        "uid": "0",
        "start_time": "1700000000",
        "path": path,
        "state": "",
    }


def stdio(pid: int, fd: int) -> Row:
    return {
        "pid": str(pid),
        "start_time": "1700000000",
        "name": "python3",
        "path": "/usr/bin/python3",
        "cmdline": "python3 -c pty.spawn",
        "parent": "1",
        "uid": "1000",
        "euid": "1000",
        "fd": str(fd),
        "kind": "unix",
        "target": "/tmp/s",
        "inode": "777",
        "mode": "rw",
        "partner_pid": "4000",
        "partner_fd": "5",
        "partner_name": "socat",
        "partner_path": "/usr/bin/socat",
        "partner_start_time": "1700000000",
    }


def es_exec(pid: int) -> Row:
    """A row of ipc-telemetry-macos/es_exec_lineage (es_process_events exec)."""
    return {
        "pid": str(pid),
        "pidversion": "3",
        "parent": "1",
        "parent_pidversion": "1",
        "original_parent": "1",
        "responsible_pid": "800",
        "responsible_pidversion": "1",
        "path": "/bin/zsh",
        "cmdline": "zsh -c id",
        "cwd": "/",
        "uid": "501",
        "euid": "501",
        "username": "alice",
        "session_id": "100017",
        "signing_id": "com.apple.zsh",
        "team_id": "",
        "platform_binary": "1",
        "codesigning_flags": "",
        "time": "1700000000",
        "parent_name": "launchd",
        "parent_path": "/sbin/launchd",
        "responsible_name": "Terminal",
        "responsible_path": "/System/Applications/Utilities/Terminal.app/Contents/MacOS/Terminal",
    }


def mach_service(label: str) -> Row:
    return {
        "path": f"/Library/LaunchDaemons/{label}.plist",
        "mach_service": label,
        "value": "true",
        "label": label,
        "program": f"/Library/PrivilegedHelperTools/{label}",
        "program_arguments": "",
        "run_at_load": "1",
        "keep_alive": "1",
        "disabled": "",
        "username": "root",
    }


@dataclass(frozen=True)
class Spec:
    """One fixture host: its platform and how much of its telemetry works."""

    host: str
    platform: str
    ipc: str  # full | partial | none
    events_on: bool = True
    denylisted: tuple[str, ...] = ()
    gap_days_ago: int | None = None  # a counter gap in its unix sockets stream
    stuck: tuple[str, ...] = ()  # scheduled queries that never executed


FLEET = (
    Spec("lnx-full", "linux", "full"),
    Spec("lnx-stock", "linux", "partial", events_on=False),
    Spec("lnx-none", "linux", "none", denylisted=("ipc-telemetry/pipe_partners",)),
    Spec("lnx-gap", "linux", "full", gap_days_ago=3),
    Spec("mac-full", "darwin", "full"),
    Spec("mac-stock", "darwin", "partial", events_on=False),
    Spec("mac-none", "darwin", "none", stuck=("ipc-telemetry/launchd_mach_services",)),
    Spec("win-full", "windows", "full"),
    Spec("win-partial", "windows", "partial", events_on=False),
    Spec("win-none", "windows", "none"),
)
HISTORY_DAYS = 40


def lines_for(spec: Spec, now: int) -> Lines:
    """What the host's osqueryd logged: telemetry-health, lineage and IPC, with its
    first lineage and socket runs ``HISTORY_DAYS`` ago."""
    out = Lines(spec.host)
    old, recent = now - HISTORY_DAYS * DAY, now - 30
    health = "telemetry-health"
    out.snapshot(health, "osquery_info", [osquery_info(spec.host, spec.platform, now)], recent)
    if spec.platform == "linux":
        _linux(out, spec, old, recent)
    elif spec.platform == "darwin":
        _darwin(out, spec, old, recent)
    else:
        _windows(out, spec, old, recent)
    return out


def _health(
    out: Lines, spec: Spec, flags: list[Row], evs: list[Row], queries: list[str], at: int
) -> None:
    out.snapshot("telemetry-health", "event_flags", flags, at)
    out.snapshot("telemetry-health", "event_publishers", evs, at)
    rows = schedule(queries, at, spec.denylisted, spec.stuck)
    out.snapshot("telemetry-health", "schedule_health", rows, at)
    if spec.denylisted:
        out.added(
            "telemetry-health",
            "denylisted_queries",
            [
                {"name": f"pack_{q.replace('/', '_')}", "interval": "60", "query": "SELECT 1"}
                for q in spec.denylisted
            ],
            at,
        )


def _linux(out: Lines, spec: Spec, old: int, recent: int) -> None:
    on = spec.events_on
    flags = [
        flag("disable_events", "false", "false"),
        flag("disable_audit", "false" if on else "true", "true"),
        flag("audit_allow_process_events", "true", "true"),
    ]
    queries = [
        "ipc-telemetry/process_lineage",
        "ipc-telemetry/process_exec_events",
        "ipc-telemetry/pipe_partners",
        "ipc-telemetry/unix_sockets",
        "ipc-telemetry/logged_in_users",
    ]
    _health(
        out,
        spec,
        flags,
        events("auditeventpublisher", "process_events", on, 1200 if on else 0),
        queries,
        recent,
    )
    lineage = [posix_process(1000 + i, 900, "bash", f"bash -c job{i}") for i in range(10)]
    for at in (old, recent):
        out.snapshot("ipc-telemetry", "process_lineage", lineage, at)
    if spec.ipc == "none":
        return
    for at in (old, recent):
        out.snapshot("ipc-telemetry", "pipe_partners", [pipe_partner(1000, 1001)], at)
    out.added(
        "ipc-telemetry", "unix_sockets", [unix_socket(700, "/run/dbus/system_bus_socket")], old
    )
    if spec.gap_days_ago is not None:  # counters 2..4 never arrive
        out.added(
            "ipc-telemetry",
            "unix_sockets",
            [unix_socket(701, "/tmp/s")],
            recent - spec.gap_days_ago * DAY,
            counter=5,
        )
    if spec.ipc == "full":
        out.snapshot(
            "telemetry-health",
            "extension_tables",
            [
                {
                    "table_name": t,
                    "active": "1",
                    "extension": "fleetctl",
                    "version": "0.1.0",
                    "sdk_version": "0.0.0",
                }
                for t in ("process_stdio", "unix_socket_peers")
            ],
            recent,
        )
        for at in (old, recent):
            out.snapshot(
                "ipc-telemetry-extension", "process_stdio", [stdio(1002, 0), stdio(1002, 1)], at
            )


def _darwin(out: Lines, spec: Spec, old: int, recent: int) -> None:
    on = spec.events_on
    flags = [
        flag("disable_events", "false", "false"),
        flag("disable_endpointsecurity", "false" if on else "true", "true"),
    ]
    queries = [
        "ipc-telemetry/process_lineage_darwin",
        "ipc-telemetry/unix_sockets",
        "ipc-telemetry/logged_in_users",
        "ipc-telemetry/launchd_mach_services",
    ] + (["ipc-telemetry-macos/es_exec_lineage"] if on else [])
    evs = events("endpointsecurity", "es_process_events", on, 500 if on else 0)
    _health(out, spec, flags, evs, queries, recent)
    lineage = [posix_process(2000 + i, 1, "zsh", f"zsh -c job{i}", darwin=True) for i in range(10)]
    for at in (old, recent):
        out.snapshot("ipc-telemetry", "process_lineage_darwin", lineage, at)
    if on:
        out.added("ipc-telemetry-macos", "es_exec_lineage", [es_exec(2100)], recent)
    if spec.ipc == "none":
        return
    out.added("ipc-telemetry", "unix_sockets", [unix_socket(300, "/var/run/mDNSResponder")], old)
    out.added("ipc-telemetry", "launchd_mach_services", [mach_service("com.example.helper")], old)


def _windows(out: Lines, spec: Spec, old: int, recent: int) -> None:
    on = spec.events_on
    flags = [
        flag("disable_events", "false", "false"),
        flag("enable_process_etw_events", "true" if on else "false", "false"),
    ]
    queries = [
        "ipc-telemetry-windows/process_lineage",
        "ipc-telemetry-windows/named_pipes_snapshot",
        "ipc-telemetry-windows/office_lolbin_starts",
    ]
    evs = events("etw_process_publisher", "process_etw_events", on, 900 if on else 0)
    _health(out, spec, flags, evs, queries, recent)
    lineage = [windows_process(3000 + i, 700, "svchost.exe") for i in range(10)]
    for at in (old, recent):
        out.snapshot("ipc-telemetry-windows", "process_lineage", lineage, at)
    if spec.ipc == "none":
        return
    pids = [800, 801, 802, 803] if spec.ipc == "full" else [-1, -1, -1, 804]
    pipes = [named_pipe(f"pipe{i}", pid) for i, pid in enumerate(pids)]
    for at in (old, recent):
        out.snapshot("ipc-telemetry-windows", "named_pipes_snapshot", pipes, at)


def feed(server: RunningServer, specs: Iterable[Spec] = FLEET) -> int:
    """Enroll every host and send its lines; returns the time they were made against."""
    now = int(time.time())
    for spec in specs:
        node = PlatformNode(server, spec.host, spec.platform)
        assert "node_key" in node.enroll()
        for answer in node.log("result", lines_for(spec, now).lines):
            assert answer == {"node_invalid": False}, answer
    return now
