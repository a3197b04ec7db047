"""The tables of a stock agent (``STOCK_TABLES``) return what osqueryd's own do, quirks
included, against real processes.

* ``process_open_sockets``: ``procGetSocketInodeToProcessInfoMap``
  (``osquery/filesystem/linux/proc.cpp``) maps each socket inode to the last (pid, fd)
  it meets, pids in string order (a ``std::set<std::string>``), each pid's fds in
  directory order: one row per socket, at the highest fd of the last holder.
* ``process_open_pipes``: ``getNamedPipeInfo``
  (``osquery/tables/system/linux/process_open_pipes.cpp``) stat()s the link's text as a
  path, so a FIFO unlinked while open (``... (deleted)``) is no FIFO to it.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from fleetctl.engine import Engine
from fleetctl.tables import EXTENSION_TABLES, STOCK_TABLES, TABLES, TableSpec
from tests.tables.ipc_world import IpcWorld, fd_inode, fd_target, wait_until

PIPE_COLUMNS = ("pid", "fd", "mode", "inode", "type", "partner_pid", "partner_fd", "partner_mode")


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait(timeout=10)


def sleeper(
    procs: list[subprocess.Popen[bytes]], stdin: int, stdout: int = subprocess.DEVNULL
) -> int:
    proc = subprocess.Popen(["sleep", "300"], stdin=stdin, stdout=stdout, stderr=subprocess.DEVNULL)
    procs.append(proc)
    return proc.pid


def socket_rows(inode: int) -> list[tuple[int, int]]:
    rows = Engine(STOCK_TABLES).query(
        f"SELECT pid, fd FROM process_open_sockets WHERE socket = {inode}"
    )
    return [(r["pid"], r["fd"]) for r in rows.rows]


def test_a_socket_held_as_fds_0_and_1_gives_one_row_at_fd_1(
    spawned: list[subprocess.Popen[bytes]],
) -> None:
    left, right = socket.socketpair()
    with left, right:
        pid = sleeper(spawned, stdin=left.fileno(), stdout=left.fileno())
        inode = os.fstat(left.fileno()).st_ino
    wait_until(lambda: fd_target(pid, 1) == f"socket:[{inode}]", what="sleep on the socket")
    assert socket_rows(inode) == [(pid, 1)]
    stock = STOCK_TABLES["process_open_sockets"].rows({"pid": {pid}})
    assert [(r["fd"], r["socket"], r["family"]) for r in stock] == [(1, inode, socket.AF_UNIX)]


def test_a_socket_shared_by_processes_is_reported_for_the_last_pid_as_a_string(
    spawned: list[subprocess.Popen[bytes]],
) -> None:
    left, right = socket.socketpair()
    with left, right:
        first = sleeper(spawned, stdin=left.fileno(), stdout=left.fileno())
        second = sleeper(spawned, stdin=left.fileno())
        inode = os.fstat(left.fileno()).st_ino
    held = f"socket:[{inode}]"
    wait_until(lambda: fd_target(first, 1) == held == fd_target(second, 0), what="both sleeping")
    last = max((first, second), key=str)
    assert socket_rows(inode) == [(last, 1 if last == first else 0)]


def test_a_fifo_unlinked_while_open_is_no_fifo_to_stock_osquery(
    spawned: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    fifo = tmp_path / "gone.fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["sh", "-c", f'exec sleep 300 < "{fifo}"'])
    spawned.append(reader)
    writer = subprocess.Popen(["sh", "-c", f'exec sleep 300 > "{fifo}"'])
    spawned.append(writer)
    # Each shell opens the FIFO, then moves it onto its stdio: wait for both ends.
    wait_until(
        lambda: fd_target(reader.pid, 0) == str(fifo) == fd_target(writer.pid, 1),
        what="both ends opened the FIFO",
    )
    fifo.unlink()
    assert fd_target(reader.pid, 0) == f"{fifo} (deleted)"
    pids = {reader.pid, writer.pid}
    ours = TABLES["process_open_pipes"].rows({"pid": pids})
    assert {(r["pid"], r["fd"], r["type"], r["partner_pid"]) for r in ours} == {
        (reader.pid, 0, "named", writer.pid),
        (writer.pid, 1, "named", reader.pid),
    }
    assert STOCK_TABLES["process_open_pipes"].rows({"pid": pids}) == []


def test_stock_pipes_match_ours_on_live_pipes_and_fifos(world: IpcWorld) -> None:
    names = ("pipe_writer", "pipe_reader", "fifo_writer", "fifo_reader", "fifo_rw", "self_pipe")
    pids = {world.pid(n) for n in names}

    def rows(tables: Mapping[str, TableSpec]) -> list[tuple[object, ...]]:
        found = tables["process_open_pipes"].rows({"pid": pids})
        return sorted(tuple(r[c] for c in PIPE_COLUMNS) for r in found)

    stock = rows(STOCK_TABLES)
    assert stock == rows(TABLES)
    reader = world.pid("pipe_reader")
    assert (reader, 0, "r", fd_inode(reader, 0), "anonymous") in {r[:5] for r in stock}


def test_stock_tables_are_osquerys_own() -> None:
    assert set(EXTENSION_TABLES) == {"process_stdio", "unix_socket_peers"}
    assert set(STOCK_TABLES) == set(TABLES) - set(EXTENSION_TABLES)
    changed = {n for n in STOCK_TABLES if STOCK_TABLES[n].generate is not TABLES[n].generate}
    assert changed == {"process_open_pipes"}
