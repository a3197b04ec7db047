"""The pure /proc and /etc parsers, on this process's real /proc entries."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from fleetctl.tables import _etc, _proc


def test_stat_and_status_of_this_process() -> None:
    pid = os.getpid()
    st = _proc.parse_stat(Path(f"/proc/{pid}/stat").read_text())
    assert st is not None
    assert (st.ppid, st.pgrp) == (os.getppid(), os.getpgrp())
    assert st.threads >= 1 and st.state in "RS"
    status = _proc.parse_status(Path(f"/proc/{pid}/status").read_text())
    assert (status.uid, status.euid, status.gid) == (os.getuid(), os.geteuid(), os.getgid())
    assert status.resident_size and status.resident_size % 1000 == 0


def test_stat_with_parenthesis_in_comm() -> None:
    text = "42 (a) b (c)) S 1 42 42 0 -1 4194560 0 0 0 0 7 3 0 0 20 0 1 0 5000 0 0"
    st = _proc.parse_stat(text)
    assert st is not None
    assert (st.state, st.ppid, st.utime, st.stime, st.nice, st.threads, st.starttime) == (
        "S",
        1,
        7,
        3,
        0,
        1,
        5000,
    )
    assert _proc.parse_stat("garbage") is None


def test_fd_links_mode_and_gone_process(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("x")
    read_fd = os.open(path, os.O_RDONLY)
    write_fd = os.open(path, os.O_WRONLY)
    try:
        links = _proc.read_fd_links(os.getpid())
        assert links is not None
        assert links[read_fd] == str(path) == links[write_fd]
        assert _proc.fd_lstat_mode(os.getpid(), read_fd) == "r"
        assert _proc.fd_lstat_mode(os.getpid(), write_fd) == "w"
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert _proc.read_fd_links(999_999_999) is None
    assert _proc.fd_lstat_mode(os.getpid(), 999_999) == "-"
    assert _proc.read_bytes("/proc/999999999/stat") is None


def test_link_inode_and_cmdline() -> None:
    assert _proc.link_inode("pipe:[123]", "pipe:[") == 123
    assert _proc.link_inode("socket:[9]", "pipe:[") is None
    assert _proc.link_inode("pipe:[x]", "pipe:[") is None
    assert _proc.cmdline_text(b"sh\0-c\0echo hi\0") == "sh -c echo hi"
    assert _proc.parse_cgroup("0::/user.slice/x.scope\n") == "/user.slice/x.scope"
    assert _proc.parse_cgroup("12:cpu,cpuacct:/a:b\n1:name=systemd:/c\n") == "/a:b"


def test_net_tcp_parser_matches_a_live_listener() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    try:
        inode = os.fstat(sock.fileno()).st_ino
        rows = _proc.parse_net_inet(Path("/proc/net/tcp").read_text(), 2, 6)
        row = next(r for r in rows if r.inode == inode)
        assert (
            row.local_address,
            row.local_port,
            row.remote_address,
            row.remote_port,
            row.state,
        ) == ("127.0.0.1", sock.getsockname()[1], "0.0.0.0", 0, "LISTEN")
    finally:
        sock.close()
    assert _proc.parse_net_inet("not a header\n", 2, 6) == []


def test_net_unix_parser_keeps_paths_with_spaces(tmp_path: Path) -> None:
    path = tmp_path / "with space.sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.listen(1)
    try:
        inode = os.fstat(sock.fileno()).st_ino
        entry = next(
            e for e in _proc.parse_net_unix(Path("/proc/net/unix").read_text()) if e.inode == inode
        )
        assert (entry.path, entry.listening, entry.type) == (str(path), True, 1)
    finally:
        sock.close()


def test_etc_parsers() -> None:
    users = _etc.parse_passwd("root:x:0:0:root:/root:/bin/bash\n+nis\nbad:line\n")
    assert users == [_etc.PasswdEntry("root", 0, 0, "root", "/root", "/bin/bash")]
    assert _etc.parse_group("wheel:x:10:a,b\n") == [_etc.GroupEntry("wheel", 10)]
    assert _etc.parse_os_release('NAME="Debian GNU/Linux"\nID=debian\n# c\n') == {
        "NAME": "Debian GNU/Linux",
        "ID": "debian",
    }
    record = _etc.UtmpRecord(7, 10, "pts/3", "bob", "host", 123)
    assert _etc.parse_utmp(_etc.pack_utmp(record) + b"\0" * 10) == [record]
    assert _etc.UTMP_SIZE == 384
