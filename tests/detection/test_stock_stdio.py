"""Stdio on a host with stock osquery only: what the ``stdio_channels`` rows leave out is
inferred (``fleetctl.detection.stock_stdio``), so a socket osquery lists once, at its
highest fd, still feeds every fd it is."""

from __future__ import annotations

from fleetctl.detection import Baseline, HostSnapshot, build_paths, score_path
from fleetctl.detection.paths import ExecutionPath
from tests.detection.rows import proc, stdio

TREE = [
    proc(1, 0, "/usr/lib/systemd/systemd", "/sbin/init", uid=0),
    proc(300, 1, "/usr/bin/socat", "socat UNIX-LISTEN:/tmp/ipc.sock,fork EXEC:/bin/sh"),
    proc(301, 300, "/usr/bin/dash", "/bin/sh"),
    proc(302, 301, "/usr/bin/sleep", "sleep 100"),
]


def channel(
    pid: int, fd: int, kind: str, target: str = "", inode: int | None = None
) -> dict[str, str]:
    """A ``stdio_channels`` row: a socket (unix, tcp, ...) or a ``path`` row."""
    return {
        "pid": str(pid),
        "start_time": "1000",
        "name": "",
        "path": "",
        "parent": "",
        "fd": str(fd),
        "kind": kind,
        "target": target,
        "inode": "" if inode is None else str(inode),
        "mode": "",
        "partner_pid": "",
        "partner_fd": "",
        "partner_name": "",
        "partner_path": "",
    }


def null(pid: int, *fds: int) -> list[dict[str, str]]:
    return [channel(pid, fd, "path", "/dev/null") for fd in fds]


def stock(rows: list[dict[str, str]], processes: list[dict[str, str]] = TREE) -> HostSnapshot:
    """The snapshot of a stock host whose init and socat have /dev/null for stdio."""
    daemons = [*null(1, 0, 1, 2), *null(300, 0, 1, 2)]
    return HostSnapshot.from_results(
        "h", {"process_lineage": processes, "stdio_channels": daemons + rows}, platform="linux"
    )


def path_of(snap: HostSnapshot, pid: int) -> ExecutionPath:
    return next(p for p in build_paths(snap) if p.child.pid == pid)


def ends(snap: HostSnapshot, pid: int) -> dict[int, tuple[str, str, int | None]]:
    return {fd: (e.kind, e.target, e.inode) for fd, e in snap.stdio.get(pid, {}).items()}


def test_a_shell_whose_only_socket_row_is_fd_1_reads_that_socket_on_fd_0() -> None:
    """socat EXEC: fds 0 and 1 are one socketpair end; osquery's row says fd 1."""
    snap = stock([channel(301, 1, "unix", inode=5001), *null(301, 2)])
    assert ends(snap, 301) == {
        0: ("unix", "", 5001),
        1: ("unix", "", 5001),
        2: ("null", "/dev/null", None),
    }
    shell = path_of(snap, 301)
    assert shell.path_key() == "dash|500|socat|systemd|null+unix"
    fd0 = next(c for c in shell.channels if c.fd == 0)
    assert "fd 1" in fd0.inferred and not next(c for c in shell.channels if c.fd == 1).inferred
    assert [(f.fd, f.kind, f.route, f.direction) for f in shell.feeds] == [
        (0, "unix", "direct", "in"),
        (1, "unix", "direct", "in"),
    ]


def test_bash_on_dev_tcp_reported_at_fd_255_is_fed_on_fds_0_to_2() -> None:
    target = "127.0.0.1:51000->127.0.0.1:4446"
    processes = [*TREE[:1], proc(200, 1, "/usr/bin/bash", "bash -i")]
    snap = stock([channel(200, 255, "tcp", target, inode=7001)], processes)
    assert ends(snap, 200) == {fd: ("tcp", target, 7001) for fd in (0, 1, 2)}
    assert snap.stock_sockets[200][0].fd == 255
    assert {f.fd for f in path_of(snap, 200).feeds if f.kind == "tcp"} == {0, 1, 2}


def test_a_socket_row_that_went_to_the_child_fills_the_shell_too() -> None:
    """osquery keeps one holder of a socket: here sleep, which inherited the shell's."""
    snap = stock([*null(301, 2), channel(302, 1, "unix", inode=5001), *null(302, 2)])
    assert ends(snap, 302)[0] == ("unix", "", 5001)
    assert ends(snap, 301) == {
        0: ("unix", "", 5001),
        1: ("unix", "", 5001),
        2: ("null", "/dev/null", None),
    }
    assert "its child 302" in snap.inferred_stdio[(301, 0)]
    assert [f.fd for f in path_of(snap, 301).feeds] == [0, 1]
    assert path_of(snap, 302).feeds == ()  # inherited from the shell: its feed, not sleep's


def test_a_shell_without_rows_takes_the_socket_its_child_was_listed_with() -> None:
    """bash -i on /dev/tcp running a command: the command (a higher pid) got the row, so
    bash has none at all, not even its fd 255."""
    target = "127.0.0.1:51000->127.0.0.1:4446"
    processes = [
        *TREE[:1],
        proc(200, 1, "/usr/bin/bash", "bash -i"),
        proc(210, 200, "/usr/bin/id", "id"),
    ]
    snap = stock([channel(210, 2, "tcp", target, inode=7001)], processes)
    assert 200 not in snap.stock_scanned
    assert ends(snap, 200) == {fd: ("tcp", target, 7001) for fd in (0, 1, 2)}
    assert {f.fd for f in path_of(snap, 200).feeds} == {0, 1, 2}
    assert path_of(snap, 210).feeds == ()


def test_stdin_alone_missing_is_a_pipe_left_by_an_exited_writer_not_a_socket() -> None:
    """``cat f | sh`` after cat exited: sh and its child share the read end, and
    process_open_pipes gives same-mode ends no row. Nothing is made up for fd 0."""
    snap = stock([*null(301, 1, 2), channel(301, 5, "unix", inode=5001), *null(302, 1, 2)])
    assert ends(snap, 301) == {1: ("null", "/dev/null", None), 2: ("null", "/dev/null", None)}
    assert ends(snap, 302) == {1: ("null", "/dev/null", None), 2: ("null", "/dev/null", None)}
    assert path_of(snap, 301).feeds == ()


def test_stdin_and_stdout_in_no_table_are_a_socket_osquery_does_not_list() -> None:
    """A CGI shell whose client reset the connection: in no /proc/net table, no row."""
    snap = stock([*null(301, 2), *null(302, 2)])
    assert ends(snap, 301) == {
        0: ("socket", "", None),
        1: ("socket", "", None),
        2: ("null", "/dev/null", None),
    }
    assert [(f.fd, f.kind) for f in path_of(snap, 301).feeds] == [(0, "socket"), (1, "socket")]


def test_several_sockets_above_fd_2_give_their_shared_kind_only() -> None:
    one_kind = stock([channel(301, 3, "unix", inode=1), channel(301, 4, "unix", inode=2)])
    assert ends(one_kind, 301) == {fd: ("unix", "", None) for fd in (0, 1, 2)}
    mixed = stock([channel(301, 3, "unix", inode=1), channel(301, 4, "tcp", "a->b", inode=2)])
    assert ends(mixed, 301) == {fd: ("socket", "", None) for fd in (0, 1, 2)}


def test_processes_without_rows_and_extension_rows_are_left_as_they_are() -> None:
    snap = HostSnapshot.from_results(
        "h",
        {
            "process_lineage": TREE,
            "process_stdio": [stdio(301, 0, "unix", partner=300), stdio(301, 1, "unix")],
            "stdio_channels": [channel(301, 1, "unix", inode=5001)],
        },
        platform="linux",
    )
    assert set(snap.stdio[301]) == {0, 1}  # fd 2 closed, as the extension saw it
    assert snap.inferred_stdio == {}
    assert 302 not in snap.stdio and 300 not in snap.stdio


def event(
    pid: int, action: str, path: str, fd: str, *, status: str = "succeeded"
) -> dict[str, str]:
    """A ``unix_socket_events`` row (socket_events; fd is audit's a0, hexadecimal)."""
    return {
        "pid": str(pid),
        "fd": fd,
        "action": action,
        "path": path,
        "status": status,
        "time": "1005",
        "start_time": "1000",
        "name": "python3",
        "process_path": "/usr/bin/python3.11",
        "cmdline": "python3 -c ...",
        "parent": "1",
    }


def test_a_client_socket_reaches_the_path_socket_events_saw_it_connect_to() -> None:
    """With audit's unix socket events, the python pty shell's socket gets its path and
    its peer: the one process serving that path."""
    processes = [
        *TREE[:1],
        proc(400, 1, "/usr/bin/python3.11", "python3 -c import pty ..."),
        proc(500, 1, "/usr/bin/socat", "socat UNIX-LISTEN:/tmp/p.sock -"),
    ]
    rows = [channel(400, 3, "unix", inode=9001), *null(500, 0, 1, 2)]
    snap = HostSnapshot.from_results(
        "h",
        {
            "process_lineage": processes,
            "stdio_channels": rows,
            "unix_listeners": [{"pid": "500", "path": "/tmp/p.sock", "fd": "5", "socket": "0"}],
            "unix_socket_events": [
                event(400, "connect", "/tmp/elsewhere.sock", "4", status="failed"),
                event(400, "connect", "/tmp/p.sock", "3"),
                event(500, "bind", "/tmp/p.sock", "5"),
            ],
        },
        platform="linux",
    )
    assert snap.unix_connects == {400: {3: "/tmp/p.sock"}}
    assert ends(snap, 400) == {fd: ("unix", "/tmp/p.sock", 9001) for fd in (0, 1, 2)}
    assert "socket_events" in snap.inferred_stdio[(400, 0)]
    feed = next(f for f in path_of(snap, 400).feeds if f.fd == 0)
    assert feed.paths == ("/tmp/p.sock",)
    assert feed.partner is not None and feed.partner.pid == 500
    assert feed.partner.relation == "sibling"  # both children of init, not plumbing


def test_a_servers_end_is_not_paired_by_its_own_path() -> None:
    """An accepted connection shows the listening path too; its peer is the client, not
    whoever listens there, so without a connect event it gets no partner by path."""
    rows = [*null(301, 2), channel(301, 1, "unix", "/tmp/ipc.sock", inode=5001)]
    snap = HostSnapshot.from_results(
        "h",
        {
            "process_lineage": TREE,
            "stdio_channels": [*null(1, 0, 1, 2), *null(300, 0, 1, 2), *rows],
            "unix_listeners": [{"pid": "300", "path": "/tmp/ipc.sock", "fd": "5", "socket": "0"}],
        },
        platform="linux",
    )
    feeds = path_of(snap, 301).feeds
    assert [(f.fd, f.paths, f.partner) for f in feeds] == [
        (0, ("/tmp/ipc.sock",), None),
        (1, ("/tmp/ipc.sock",), None),
    ]


def test_a_service_writing_to_the_journal_is_not_fed_by_it() -> None:
    """A systemd service's stdout and stderr are the journal's socket, whose client end
    stock osquery lists with no path and no other end: that is where it writes, so the
    interpreter it starts has no parent fed by IPC. The same socket on stdin would be."""
    processes = [
        *TREE[:1],
        proc(400, 1, "/usr/bin/python3.12", "python3 gunicorn app.wsgi"),
        proc(401, 400, "/usr/bin/python3.12", "python3 /srv/app/worker.py"),
    ]
    journal = [
        *null(400, 0),
        channel(400, 1, "unix", inode=6001),
        channel(400, 2, "unix", inode=6001),
    ]
    worker = path_of(stock([*journal, *null(401, 0, 1, 2)], processes), 401)
    assert [(f.fd, f.direction) for f in worker.parent_feeds] == [(1, "out"), (2, "out")]
    assert "parent_fed_by_ipc" not in {r.code for r in score_path(worker, Baseline()).reasons}

    fed = [channel(400, 0, "unix", inode=6001), *journal[1:]]
    worker = path_of(stock([*fed, *null(401, 0, 1, 2)], processes), 401)
    assert {f.direction for f in worker.parent_feeds} == {"in"}
    assert "parent_fed_by_ipc" in {r.code for r in score_path(worker, Baseline()).reasons}
