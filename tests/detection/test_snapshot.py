"""``HostSnapshot`` from rows as the packs return them (strings, "" for NULL)."""

from __future__ import annotations

from fleetctl.detection import HostSnapshot
from fleetctl.detection.normalize import argv0, basename, normalize_cmdline, to_int


def lineage(
    pid: int, parent: int, name: str, path: str, cmdline: str, start: int, **extra: str
) -> dict[str, str]:
    row = {
        "pid": str(pid),
        "parent": str(parent),
        "start_time": str(start),
        "name": name,
        "path": path,
        "cmdline": cmdline,
        "uid": "1000",
        "euid": "1000",
        "cwd": "/",
        "pgroup": str(pid),
        "cgroup_path": "/user.slice/user-1000.slice/session-3.scope",
        "parent_start_time": "",
        "parent_name": "",
        "parent_path": "",
        "parent_cmdline": "",
        "grandparent_pid": "",
        "grandparent_name": "",
        "grandparent_path": "",
        "grandparent_cmdline": "",
    }
    row.update(extra)
    return row


def test_values_are_parsed_from_osquery_strings() -> None:
    assert to_int("") is None and to_int("-1") == -1 and to_int("42") == 42
    assert to_int("1.0") == 1 and to_int("x") is None
    assert basename("/usr/bin/python3.11 (deleted)") == "python3.11"
    assert basename("C:\\Windows\\System32\\CMD.EXE") == "cmd.exe"
    assert argv0('"C:\\Program Files\\x.exe" /c') == "x.exe"
    assert normalize_cmdline("sleep 30") == normalize_cmdline("sleep  31")
    assert normalize_cmdline("cat /tmp/tmp.Ab3dE5fG1h/x") == "cat /tmp/tmp.<rand>/x"


def test_joined_parent_and_grandparent_fill_in_missing_processes() -> None:
    row = lineage(
        300,
        200,
        "sh",
        "/usr/bin/dash",
        "sh -c id",
        1000,
        parent_start_time="990",
        parent_name="sshd",
        parent_path="/usr/sbin/sshd",
        parent_cmdline="sshd: alice@notty",
        grandparent_pid="1",
        grandparent_name="systemd",
        grandparent_path="/usr/lib/systemd/systemd",
        grandparent_cmdline="/sbin/init",
    )
    snap = HostSnapshot.from_results("h", {"process_lineage": [row]})
    assert snap.processes[200].parent == 1 and snap.processes[200].start_time == 990
    assert [p.pid for p in snap.ancestors(300)] == [200, 1]
    assert snap.processes[300].key == (300, 1000)


def test_pack_prefixed_names_and_unknown_queries() -> None:
    snap = HostSnapshot.from_results(
        "h",
        {
            "pack_ipc-telemetry_process_lineage": [lineage(10, 1, "bash", "/bin/bash", "bash", 5)],
            "pack_ipc-telemetry_osquery_info": [{"version": "5.12.1"}],
        },
    )
    assert 10 in snap.processes
    assert snap.skipped == ["osquery_info"]


def test_rows_of_a_reused_pid_are_dropped() -> None:
    """A stdio row whose start_time is not the lineage process's is an earlier process."""
    stale = {
        "pid": "10",
        "start_time": "100",
        "name": "bash",
        "path": "/bin/bash",
        "parent": "1",
        "fd": "0",
        "kind": "path",
        "target": "/dev/pts/1",
        "inode": "",
        "mode": "",
        "partner_pid": "",
        "partner_fd": "",
        "partner_name": "",
        "partner_path": "",
    }
    fresh = dict(stale, start_time="5001", fd="1", target="/dev/pts/2")  # one second apart
    snap = HostSnapshot.from_results(
        "h",
        {
            "process_lineage": [lineage(10, 1, "bash", "/bin/bash", "bash", 5000)],
            "stdio_channels": [stale, fresh],
        },
    )
    assert snap.stale_rows == 1
    assert set(snap.stdio[10]) == {1}
    assert snap.stdio[10][1].kind == "pty"


def test_extension_stdio_wins_over_stock_rows() -> None:
    stock = {
        "pid": "10",
        "start_time": "5",
        "name": "python3",
        "path": "/usr/bin/python3",
        "parent": "1",
        "fd": "0",
        "kind": "path",
        "target": "/dev/null",
        "inode": "",
        "mode": "",
        "partner_pid": "",
        "partner_fd": "",
        "partner_name": "",
        "partner_path": "",
    }
    ext = {
        "pid": "10",
        "start_time": "5",
        "name": "python3",
        "path": "/usr/bin/python3",
        "cmdline": "python3",
        "parent": "1",
        "uid": "0",
        "euid": "0",
        "fd": "0",
        "kind": "unix",
        "target": "/tmp/p.sock",
        "inode": "77",
        "mode": "rw",
        "partner_pid": "20",
        "partner_fd": "5",
        "partner_name": "socat",
        "partner_path": "/usr/bin/socat",
        "partner_start_time": "4",
    }
    for order in (
        [("stdio_channels", [stock]), ("process_stdio", [ext])],
        [("process_stdio", [ext]), ("stdio_channels", [stock])],
    ):
        snap = HostSnapshot.from_results("h", dict(order))
        end = snap.stdio[10][0]
        assert (end.kind, end.target, end.partners, end.source) == (
            "unix",
            "/tmp/p.sock",
            (20,),
            "extension",
        )
        assert snap.processes[20].basename == "socat"


def test_extension_socket_of_unknown_family_is_a_socket() -> None:
    """A TCP connection closed by the peer leaves no row in /proc/net/tcp: ``other``."""
    row = {
        "pid": "10",
        "start_time": "5",
        "name": "sh",
        "path": "/bin/sh",
        "cmdline": "sh",
        "parent": "1",
        "uid": "65534",
        "euid": "65534",
        "fd": "0",
        "kind": "other",
        "target": "socket:[741868]",
        "inode": "741868",
        "mode": "rw",
        "partner_pid": "-1",
        "partner_fd": "-1",
        "partner_name": "",
        "partner_path": "",
        "partner_start_time": "",
    }
    device = dict(row, fd="1", target="/dev/kmsg", inode="0")
    snap = HostSnapshot.from_results("h", {"process_stdio": [row, device]})
    assert (snap.stdio[10][0].kind, snap.stdio[10][0].target) == ("socket", "")
    assert snap.stdio[10][1].kind == "other"


def test_fifo_stdio_from_stock_union_rows() -> None:
    """stdio_channels gives a FIFO twice: the pipe row (partner) and the path row (path)."""
    base = {
        "pid": "10",
        "start_time": "5",
        "name": "sh",
        "path": "/bin/sh",
        "parent": "1",
        "fd": "0",
        "inode": "",
        "mode": "",
        "partner_pid": "",
        "partner_fd": "",
        "partner_name": "",
        "partner_path": "",
    }
    rows = [
        dict(base, kind="fifo", target="", inode="99", mode="r", partner_pid="11"),
        dict(base, kind="path", target="/dev/shm/.c"),
    ]
    snap = HostSnapshot.from_results("h", {"stdio_channels": rows})
    end = snap.stdio[10][0]
    assert (end.kind, end.target, end.partners) == ("fifo", "/dev/shm/.c", (11,))
    assert snap.fifo_paths(10) == ("/dev/shm/.c",)


def test_listeners_peers_fifos_and_sessions() -> None:
    snap = HostSnapshot.from_results(
        "h",
        {
            "unix_listeners": [
                {
                    "pid": "30",
                    "name": "socat",
                    "process_path": "/usr/bin/socat",
                    "cmdline": "socat UNIX-LISTEN:/tmp/x",
                    "uid": "0",
                    "path": "/tmp/x",
                    "fd": "5",
                    "socket": "0",
                }
            ],
            "unix_socket_peers": [
                {
                    "pid": "31",
                    "name": "socat",
                    "process_path": "/usr/bin/socat",
                    "start_time": "9",
                    "path": "",
                    "type": "stream",
                    "state": "established",
                    "peer_pid": "30",
                    "peer_name": "socat",
                    "peer_process_path": "/usr/bin/socat",
                    "peer_path": "/tmp/x",
                }
            ],
            "named_fifos": [
                {
                    "pid": "40",
                    "name": "cat",
                    "process_path": "/bin/cat",
                    "cmdline": "cat /tmp/f",
                    "uid": "0",
                    "path": "/tmp/f",
                    "fd": "3",
                    "mode": "r",
                    "inode": "5",
                    "partner_pid": "",
                    "partner_name": "",
                }
            ],
            "logged_in_users": [
                {
                    "type": "user",
                    "user": "alice",
                    "tty": "pts/0",
                    "host": "10.0.0.5",
                    "time": "1",
                    "pid": "50",
                    "name": "sshd",
                    "path": "/usr/sbin/sshd",
                    "cmdline": "sshd: alice@pts/0",
                }
            ],
        },
    )
    assert snap.listening(30) == ("unix:/tmp/x",)
    assert snap.socket_paths(31) == ("/tmp/x",)
    assert snap.fifo_paths(40) == ("/tmp/f",)
    assert snap.sessions_for([50], "")[0].user == "alice"


def test_platform_is_guessed_from_rows() -> None:
    win = HostSnapshot.from_results(
        "w",
        {
            "process_lineage": [
                lineage(5, 4, "cmd.exe", "C:\\Windows\\System32\\cmd.exe", "cmd.exe", 1)
            ]
        },
    )
    assert win.platform == "windows"
    assert HostSnapshot.from_results("l", {}).platform == "linux"
    assert HostSnapshot.from_results("l", {}, platform="darwin").platform == "darwin"


def test_generic_process_rows_with_parent_cmdline() -> None:
    """Rows of other packs' process queries: pid, parent, name, cmdline and ``pcmdline``."""
    row = {
        "cmdline": "/bin/sh /etc/cron.daily/logrotate",
        "euid": "0",
        "name": "run-parts",
        "parent": "9",
        "path": "",
        "pcmdline": "/bin/bash /bin/run-parts /etc/cron.daily",
        "pid": "12",
        "uid": "0",
        "username": "root",
    }
    snap = HostSnapshot.from_results("h", {"pack_custom_processes": [row]})
    assert snap.processes[12].username == "root"
    assert snap.processes[9].cmdline == "/bin/bash /bin/run-parts /etc/cron.daily"
    assert snap.processes[12].names == ("run-parts", "sh")
