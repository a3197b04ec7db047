"""processes and process_open_files against live processes, checked with ps(1)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from fleetctl.tables import TABLES, Scan
from fleetctl.tables import processes as processes_table
from tests.tables.ipc_world import SLEEP, IpcWorld, wait_until


def ps(pid: int, field: str) -> str:
    return subprocess.run(
        ["ps", "-o", f"{field}=", "-p", str(pid)], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_sleep_process_row(world: IpcWorld) -> None:
    pid = world.pid("pipe_writer")
    [row] = TABLES["processes"].rows({"pid": {pid}})
    cgroup = Path(f"/proc/{pid}/cgroup").read_text().split("\n")[0].split(":", 2)[2]
    expected = {
        "pid": pid,
        "name": "sleep",
        "path": os.path.realpath(shutil.which("sleep") or ""),
        "cmdline": f"sleep {SLEEP}",
        "state": "S",
        "cwd": os.getcwd(),
        "root": "/",
        "uid": os.getuid(),
        "euid": os.geteuid(),
        "suid": os.getuid(),
        "gid": os.getgid(),
        "egid": os.getegid(),
        "sgid": os.getgid(),
        "on_disk": 1,
        "wired_size": 0,
        "parent": os.getpid(),
        "pgroup": os.getpgid(pid),
        "threads": 1,
        "nice": os.getpriority(os.PRIO_PROCESS, pid),
        "cgroup_path": cgroup,
    }
    assert {k: row[k] for k in expected} == expected
    assert row["resident_size"] == int(ps(pid, "rss")) * 1000  # osquery: kB x 1000
    assert row["total_size"] == int(ps(pid, "vsz")) * 1000
    started = time.mktime(time.strptime(ps(pid, "lstart"), "%a %b %d %H:%M:%S %Y"))
    assert abs(row["start_time"] - started) <= 2
    assert row["user_time"] >= 0 and row["system_time"] >= 0
    assert row["disk_bytes_read"] is not None and row["disk_bytes_written"] is not None


def test_every_live_process_matches_ps_parent_and_name() -> None:
    rows = {r["pid"]: r for r in TABLES["processes"].rows()}
    out = subprocess.run(
        ["ps", "-e", "-o", "pid=,ppid=,pgid="], capture_output=True, text=True, check=True
    ).stdout
    checked = 0
    for line in out.splitlines():
        pid, ppid, pgid = (int(x) for x in line.split())
        if pid in rows:
            assert (rows[pid]["parent"], rows[pid]["pgroup"]) == (ppid, pgid)
            checked += 1
    assert checked >= len(rows) - 5  # processes may come and go between the two reads


def test_odd_command_name_cmdline_and_pushdown(tmp_path: Path) -> None:
    """A comm containing ") " must not confuse /proc/<pid>/stat parsing."""
    binary = tmp_path / "odd) name"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", binary)
    proc = subprocess.Popen(["my prog", "30", "1"], executable=binary)
    try:
        wait_until(
            lambda: (
                Path(f"/proc/{proc.pid}/cmdline").read_bytes().startswith(b"my")
                and ") S " in Path(f"/proc/{proc.pid}/stat").read_text()
            )
        )
        rows = TABLES["processes"].rows({"pid": {proc.pid, 999_999_999, "not-a-pid"}})
        assert [r["pid"] for r in rows] == [proc.pid]
        row = rows[0]
        assert (row["name"], row["cmdline"], row["state"], row["parent"]) == (
            "odd) name",
            "my prog 30 1",
            "S",
            os.getpid(),
        )
        assert TABLES["processes"].rows({"pid": {"x"}}) == []
    finally:
        proc.kill()
        proc.wait()


def test_deleted_binary_has_on_disk_0_and_a_clean_path(tmp_path: Path) -> None:
    binary = tmp_path / "sleepcopy"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", binary)
    proc = subprocess.Popen([str(binary), "30"])
    try:
        wait_until(lambda: os.readlink(f"/proc/{proc.pid}/exe") == str(binary))
        binary.unlink()
        [row] = TABLES["processes"].rows({"pid": {proc.pid}})
        assert (row["path"], row["on_disk"]) == (str(binary), 0)
    finally:
        proc.kill()
        proc.wait()


def test_process_exiting_mid_scan_is_skipped() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    scan = Scan()
    assert proc.pid in scan.pids()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()  # reaped: /proc/<pid> is gone but the scan still lists it
    rows = processes_table.generate({}, scan)
    assert proc.pid not in {r["pid"] for r in rows}
    assert scan.fds(proc.pid) is None
    for name in (
        "process_open_files",
        "process_open_pipes",
        "process_stdio",
        "unix_socket_peers",
        "process_open_sockets",
    ):
        TABLES[name].generate({}, scan)  # must not raise


def test_open_files_skip_sockets_and_pipes(world: IpcWorld) -> None:
    got = TABLES["process_open_files"].rows(
        {"pid": {world.pid("fifo_writer"), world.pid("pipe_reader"), world.pid("unix_client")}}
    )
    assert sorted((r["pid"], r["fd"], r["path"]) for r in got) == sorted(
        [
            (world.pid("fifo_writer"), 0, "/dev/null"),
            (world.pid("fifo_writer"), 1, str(world.fifo)),
            (world.pid("fifo_writer"), 2, "/dev/null"),
            (world.pid("pipe_reader"), 1, "/dev/null"),
            (world.pid("pipe_reader"), 2, "/dev/null"),
            (world.pid("unix_client"), 1, "/dev/null"),
            (world.pid("unix_client"), 2, "/dev/null"),
        ]
    )


@pytest.mark.parametrize("table", ["processes", "process_open_files", "process_stdio"])
def test_full_scan_includes_this_process(table: str) -> None:
    assert os.getpid() in {r["pid"] for r in TABLES[table].rows()}
