"""process_stdio: the channel behind fds 0-2 and the process at the other end."""

from __future__ import annotations

import os

from fleetctl.tables import TABLES, _proc
from tests.tables.ipc_world import IpcWorld, fd_inode, wait_until

COLUMNS = ("fd", "kind", "target", "inode", "mode", "partner_pid", "partner_fd")
NULL = ("null", "/dev/null", 0, "rw", -1, -1)


def stdio(world: IpcWorld, name: str) -> list[tuple[object, ...]]:
    pid = world.pid(name)
    rows = TABLES["process_stdio"].rows({"pid": {pid}})
    assert {r["pid"] for r in rows} == {pid}
    return sorted(tuple(r[c] for c in COLUMNS) for r in rows)


def test_pipeline_ends(world: IpcWorld) -> None:
    writer, reader = world.pid("pipe_writer"), world.pid("pipe_reader")
    inode = fd_inode(writer, 1)
    target = f"pipe:[{inode}]"
    assert stdio(world, "pipe_writer") == [
        (0, *NULL),
        (1, "pipe", target, inode, "w", reader, 0),
        (2, *NULL),
    ]
    assert stdio(world, "pipe_reader") == [
        (0, "pipe", target, inode, "r", writer, 1),
        (1, *NULL),
        (2, *NULL),
    ]


def test_fifo_ends_and_rw_fifo(world: IpcWorld) -> None:
    inode = os.stat(world.fifo).st_ino
    path = str(world.fifo)
    assert stdio(world, "fifo_reader")[0] == (
        0,
        "fifo",
        path,
        inode,
        "r",
        world.pid("fifo_writer"),
        1,
    )
    assert stdio(world, "fifo_writer")[1] == (
        1,
        "fifo",
        path,
        inode,
        "w",
        world.pid("fifo_reader"),
        0,
    )
    assert stdio(world, "fifo_rw")[0] == (
        0,
        "fifo",
        str(world.fifo_rw),
        os.stat(world.fifo_rw).st_ino,
        "rw",
        -1,
        -1,
    )


def test_unix_client_stdin_names_the_server_path_and_process(world: IpcWorld) -> None:
    server, client = world.pid("unix_server"), world.pid("unix_client")
    assert stdio(world, "unix_client")[0] == (
        0,
        "unix",
        str(world.unix_path),
        fd_inode(client, 0),
        "rw",
        server,
        11,
    )


def test_socketpair_partner(world: IpcWorld) -> None:
    left, right = world.pid("pair_left"), world.pid("pair_right")
    inode = fd_inode(left, 0)
    assert stdio(world, "pair_left")[0] == (0, "unix", f"socket:[{inode}]", inode, "rw", right, 1)


def test_tcp_stdout(world: IpcWorld) -> None:
    client = world.pid("tcp_client")
    row = stdio(world, "tcp_client")[1]
    sockets = TABLES["process_open_sockets"].rows({"pid": {client}})
    local_port = next(s["local_port"] for s in sockets if s["fd"] == 1)
    assert row == (
        1,
        "tcp",
        f"127.0.0.1:{local_port}->127.0.0.1:{world.tcp_port}",
        fd_inode(client, 1),
        "rw",
        -1,
        -1,
    )


def test_closed_descriptor(world: IpcWorld) -> None:
    assert stdio(world, "closed_stderr")[2] == (2, "closed", "", 0, "", -1, -1)


def kernel_threads() -> set[int]:
    found = set()
    for pid in _proc.list_pids():
        text = _proc.read_text(f"/proc/{pid}/stat")
        st = _proc.parse_stat(text) if text else None
        if st is not None and st.flags & _proc.PF_KTHREAD:
            found.add(pid)
    return found


def test_kernel_threads_have_no_rows() -> None:
    threads = kernel_threads()
    if threads:
        assert TABLES["process_stdio"].rows({"pid": threads}) == []


def test_regular_file() -> None:
    with open(__file__) as f:
        read_fd = os.dup(f.fileno())
    pid = os.fork()
    if pid == 0:
        os.dup2(read_fd, 0)
        os.execvp("sleep", ["sleep", "30"])
    try:
        wait_until(lambda: os.readlink(f"/proc/{pid}/exe").endswith("sleep"))
        row = TABLES["process_stdio"].rows({"pid": {pid}})[0]
        assert (row["fd"], row["kind"], row["target"], row["mode"]) == (
            0,
            "file",
            os.path.realpath(__file__),
            "r",
        )
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(read_fd)
