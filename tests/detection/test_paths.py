"""Execution-path records: key, channels, partners and feeds, on hand-made rows."""

from __future__ import annotations

from fleetctl.detection import ExecutionPath, build_paths, container_hint
from tests.detection.rows import BASE, BASE_STDIO, proc, snapshot, stdio


def by_pid(paths: list[ExecutionPath]) -> dict[int, ExecutionPath]:
    return {p.child.pid: p for p in paths}


def test_path_key_fields_and_lineage() -> None:
    paths = by_pid(build_paths(snapshot(BASE, BASE_STDIO)))
    bash = paths[601]
    assert bash.path_key() == "bash|500|sshd|sshd|pty"
    assert [r.pid for r in bash.lineage] == [601, 600, 500, 1]
    assert bash.tty == "pts/0"
    assert paths[700].path_key() == "python3.11|33|systemd|-|-"
    assert 1 not in paths  # roots have no path


def test_key_escapes_separator_and_buckets_euid() -> None:
    odd = [proc(1, 0, "/sbin/init", "init", uid=0), proc(9, 1, "/opt/a|b", "a|b", uid=65534)]
    path = build_paths(snapshot(odd))[0]
    assert path.path_key() == "a%7Cb|500|init|-|-"


def test_container_hint_from_cgroup() -> None:
    assert (
        container_hint("/system.slice/docker-0123456789abcdef0123.scope") == "docker:0123456789ab"
    )
    assert (
        container_hint(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
            "12345678_1234_1234_1234_123456789012.slice/cri-containerd-"
            "abcdefabcdef0000.scope"
        )
        == "containerd:abcdefabcdef"
    )
    assert container_hint("/system.slice/ssh.service") == "unit:ssh.service"
    assert container_hint("/") == ""


def test_sibling_pipeline_is_no_feed_but_a_fifo_reader_is_a_relay() -> None:
    procs = [
        *BASE,
        proc(800, 601, "/usr/bin/dash", "sh -c cat f | sh"),
        proc(801, 800, "/usr/bin/cat", "cat /tmp/f"),
        proc(802, 800, "/usr/bin/dash", "sh -i"),
    ]
    channels = [*BASE_STDIO, stdio(802, 0, "pipe", partner=801), stdio(801, 1, "pipe", partner=802)]
    plain = by_pid(build_paths(snapshot(procs, channels)))[802]
    assert plain.channels[0].partners[0].relation == "sibling"
    assert plain.feeds == ()
    fifo = {
        "pid": "801",
        "name": "cat",
        "process_path": "/usr/bin/cat",
        "cmdline": "cat /tmp/f",
        "uid": "1000",
        "path": "/tmp/f",
        "fd": "3",
        "mode": "r",
        "inode": "9",
        "partner_pid": "",
        "partner_name": "",
    }
    relayed = by_pid(build_paths(snapshot(procs, channels, named_fifos=[fifo])))[802]
    (feed,) = relayed.feeds
    assert (feed.kind, feed.route, feed.paths, feed.partner and feed.partner.pid) == (
        "fifo",
        "relay",
        ("/tmp/f",),
        801,
    )


def test_fifo_held_only_by_descendants_has_no_known_feeder() -> None:
    procs = [*BASE, proc(900, 700, "/usr/bin/dash", "sh"), proc(901, 900, "/usr/bin/sleep", "s")]
    channels = [stdio(900, 0, "fifo", "/dev/shm/.c", mode="rw", partner=901)]
    path = by_pid(build_paths(snapshot(procs, channels)))[900]
    (feed,) = path.feeds
    assert (feed.kind, feed.route, feed.partner) == ("fifo", "direct", None)
    # The inherited copy is still shown as the other end of the channel.
    assert path.channels[0].partners[0].relation == "descendant"


def test_socketpair_with_parent_is_plumbing() -> None:
    procs = [*BASE, proc(910, 700, "/usr/bin/dash", "sh")]
    channels = [stdio(910, fd, "unix", mode="rw", partner=700) for fd in (0, 1)]
    assert by_pid(build_paths(snapshot(procs, channels)))[910].feeds == ()


def test_loopback_tcp_partner_is_found_from_both_ends() -> None:
    procs = [
        *BASE,
        proc(920, 601, "/usr/bin/bash", "bash -i"),
        proc(930, 601, "/usr/bin/python3", "python3 listener.py"),
    ]
    channels = [
        stdio(920, 0, "tcp", "127.0.0.1:50000->127.0.0.1:4446", mode="rw"),
        stdio(930, 0, "tcp", "127.0.0.1:4446->127.0.0.1:50000", mode="rw"),
    ]
    (feed,) = by_pid(build_paths(snapshot(procs, channels)))[920].feeds
    assert feed.partner is not None and feed.partner.pid == 930


def test_output_only_pipe_to_a_relay_is_marked_out() -> None:
    procs = [
        *BASE,
        proc(940, 601, "/usr/bin/sleep", "sleep 9"),
        proc(941, 601, "/usr/bin/socat", "socat - UNIX-CONNECT:/tmp/s"),
    ]
    channels = [
        stdio(940, 1, "pipe", mode="w", partner=941),
        stdio(941, 0, "pipe", mode="r", partner=940),
    ]
    peers = [
        {
            "pid": "941",
            "name": "socat",
            "process_path": "/usr/bin/socat",
            "start_time": "1000",
            "path": "",
            "type": "stream",
            "state": "established",
            "peer_pid": "-1",
            "peer_name": "",
            "peer_process_path": "",
            "peer_path": "/tmp/s",
        }
    ]
    (feed,) = by_pid(build_paths(snapshot(procs, channels, unix_socket_peers=peers)))[940].feeds
    assert (feed.kind, feed.route, feed.direction) == ("unix", "relay", "out")


def test_forked_worker_is_marked() -> None:
    procs = [*BASE, proc(950, 700, "/usr/bin/python3.11", "python3 app.py", uid=33)]
    assert by_pid(build_paths(snapshot(procs)))[950].forked


def test_parent_listeners_include_the_forking_server() -> None:
    procs = [
        *BASE,
        proc(960, 1, "/usr/bin/socat", "socat UNIX-LISTEN:/tmp/s,fork EXEC:sh"),
        proc(961, 960, "/usr/bin/socat", "socat UNIX-LISTEN:/tmp/s,fork EXEC:sh"),
        proc(962, 961, "/usr/bin/dash", "/bin/sh"),
    ]
    listeners = [
        {
            "pid": "960",
            "name": "socat",
            "process_path": "/usr/bin/socat",
            "cmdline": "",
            "uid": "0",
            "path": "/tmp/s",
            "fd": "5",
            "socket": "0",
        }
    ]
    path = by_pid(build_paths(snapshot(procs, unix_listeners=listeners)))[962]
    assert path.parent_listeners == ("unix:/tmp/s",)


def test_descriptor_inherited_from_an_ancestor_is_not_the_childs_feed() -> None:
    procs = [
        *BASE,
        proc(970, 601, "/usr/bin/bash", "bash -i"),
        proc(971, 970, "/usr/bin/sleep", "sleep 60"),
    ]
    channels = [
        *(
            stdio(970, fd, "tcp", "10.0.0.5:4000->10.0.0.9:4444", mode="rw", inode=55)
            for fd in (0, 1, 2)
        ),
        *(
            stdio(971, fd, "tcp", "10.0.0.5:4000->10.0.0.9:4444", mode="rw", inode=55)
            for fd in (0, 1)
        ),
    ]
    paths = by_pid(build_paths(snapshot(procs, channels)))
    assert [f.kind for f in paths[970].feeds] == ["tcp"] * 3
    assert paths[971].feeds == ()
    assert [f.kind for f in paths[971].parent_feeds] == ["tcp"] * 3


def test_a_tcp_feed_over_loopback_is_partnered_with_the_stdio_of_its_twin_end() -> None:
    """``bash -i >& /dev/tcp/...`` to a listener that relays the connection on its own
    stdio: the other end is found from the reversed addresses, with no partner in the rows."""
    procs = [
        *BASE,
        proc(820, 601, "/usr/bin/python3.11", "python3 listener.py"),
        proc(821, 601, "/usr/bin/bash", "bash -i"),
    ]
    channels = [
        *BASE_STDIO,
        *(stdio(820, fd, "tcp", "127.0.0.1:4444->127.0.0.1:50000") for fd in (0, 1)),
        *(stdio(821, fd, "tcp", "127.0.0.1:50000->127.0.0.1:4444") for fd in (0, 1, 2)),
    ]
    shell = by_pid(build_paths(snapshot(procs, channels)))[821]
    feed = next(f for f in shell.feeds if f.kind == "tcp")
    assert feed.partner is not None and feed.partner.pid == 820
