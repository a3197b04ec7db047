"""process_open_pipes against real pipes and FIFOs (osquery semantics)."""

from __future__ import annotations

import os
import time

from fleetctl.tables import TABLES, Scan
from tests.tables.ipc_world import IpcWorld, fd_inode

COLUMNS = ("pid", "fd", "mode", "inode", "type", "partner_pid", "partner_fd", "partner_mode")


def rows_for(world: IpcWorld, *names: str) -> set[tuple[object, ...]]:
    pids = {world.pid(n) for n in names}
    rows = TABLES["process_open_pipes"].rows({"pid": pids})
    return {tuple(r[c] for c in COLUMNS) for r in rows}


def test_anonymous_pipe_between_two_processes_gives_a_row_each_way(world: IpcWorld) -> None:
    writer, reader = world.pid("pipe_writer"), world.pid("pipe_reader")
    inode = fd_inode(reader, 0)
    assert inode == fd_inode(writer, 1)
    assert rows_for(world, "pipe_writer", "pipe_reader") == {
        (writer, 1, "w", inode, "anonymous", reader, 0, "r"),
        (reader, 0, "r", inode, "anonymous", writer, 1, "w"),
    }


def test_named_fifo_is_linked_by_the_fifo_inode(world: IpcWorld) -> None:
    writer, reader = world.pid("fifo_writer"), world.pid("fifo_reader")
    inode = os.stat(world.fifo).st_ino
    assert rows_for(world, "fifo_writer", "fifo_reader") == {
        (writer, 1, "w", inode, "named", reader, 0, "r"),
        (reader, 0, "r", inode, "named", writer, 1, "w"),
    }


def test_single_holder_gives_one_row_with_null_partner(world: IpcWorld) -> None:
    pid = world.pid("fifo_rw")
    inode = os.stat(world.fifo_rw).st_ino
    assert rows_for(world, "fifo_rw") == {(pid, 0, "rw", inode, "named", None, None, None)}


def test_process_holding_both_ends_partners_with_itself(world: IpcWorld) -> None:
    pid = world.pid("self_pipe")
    inode = fd_inode(pid, 20)
    assert rows_for(world, "self_pipe") == {
        (pid, 20, "r", inode, "anonymous", pid, 21, "w"),
        (pid, 21, "w", inode, "anonymous", pid, 20, "r"),
    }


def test_pid_constraint_still_finds_partners_in_other_processes(world: IpcWorld) -> None:
    reader = world.pid("pipe_reader")
    rows = TABLES["process_open_pipes"].rows({"pid": {reader}})
    assert {r["pid"] for r in rows} == {reader}
    assert [(r["partner_pid"], r["partner_fd"]) for r in rows] == [(world.pid("pipe_writer"), 1)]


def test_full_scan_matches_the_constrained_rows(world: IpcWorld) -> None:
    names = ("pipe_writer", "pipe_reader", "fifo_writer", "fifo_reader", "fifo_rw", "self_pipe")
    pids = {world.pid(n) for n in names}
    full = {
        tuple(r[c] for c in COLUMNS)
        for r in TABLES["process_open_pipes"].rows()
        if r["pid"] in pids
    }
    assert full == rows_for(world, *names)


def test_same_mode_holders_are_not_partners(world: IpcWorld) -> None:
    """Two readers of one pipe (parent and child after fork) are not partners, and with no
    writer left osquery reports no row for them at all."""
    r, w = os.pipe()
    os.close(w)
    pid = os.fork()
    if pid == 0:  # child: hold the read end and wait to be killed
        time.sleep(30)
        os._exit(0)
    try:
        scan = Scan()
        rows = TABLES["process_open_pipes"].rows({"pid": {os.getpid(), pid}}, scan)
        inode = os.fstat(r).st_ino
        assert [row for row in rows if row["inode"] == inode] == []
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(r)
