"""Pure readers and parsers for ``/proc``: no caching, no table logic.

Every reader takes the proc root (``/proc`` normally) so tests and benchmarks can point
them anywhere, and returns ``None`` instead of raising when a process vanished or is not
readable: a scan races with processes exiting, and one such process must never spoil
the rows of all the others. The parsers mirror osquery's Linux implementation
(``osquery/filesystem/linux/proc.cpp``, ``tables/system/linux/processes.cpp``), and
note it where they deliberately differ.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import struct
import time
from typing import NamedTuple

PROC = "/proc"

# Errors that mean "this process or fd is gone or not ours to read"; anything else
# (EMFILE, ENOMEM, ...) is a real fault and propagates.
GONE_ERRNOS = frozenset({2, 3, 13, 1, 20, 22})  # ENOENT ESRCH EACCES EPERM ENOTDIR EINVAL

_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_CHUNK = 65536


def _gone(error: OSError) -> bool:
    return error.errno in GONE_ERRNOS


def read_bytes(path: str, *, to_eof: bool = True) -> bytes | None:
    """Whole file content, or None if it vanished or is unreadable.

    os.open/os.read is about twice as fast as ``open()`` for the tiny files /proc is made
    of. With ``to_eof`` reads continue until EOF, which multi-record seq_files
    (/proc/net/*) need: they return about a page per read. Per-process files produced
    in one piece (stat, status, io, cgroup, cmdline) are complete after one short read,
    so ``to_eof=False`` saves the extra read() that would only return EOF.
    """
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as error:
        if _gone(error):
            return None
        raise
    try:
        chunks = []
        while True:
            chunk = os.read(fd, _CHUNK)
            if not chunk:
                break
            chunks.append(chunk)
            if not to_eof and len(chunk) < _CHUNK:
                break
        return b"".join(chunks)
    except OSError as error:
        if _gone(error):
            return None
        raise
    finally:
        os.close(fd)


def read_text(path: str, *, to_eof: bool = True) -> str | None:
    data = read_bytes(path, to_eof=to_eof)
    return None if data is None else data.decode("utf-8", "replace")


def read_link(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError as error:
        if _gone(error):
            return None
        raise


def list_pids(proc_root: str = PROC) -> list[int]:
    """Numeric entries of the proc root, ascending."""
    return sorted(int(name) for name in os.listdir(proc_root) if name.isdigit())


def read_fd_links(pid: int, proc_root: str = PROC) -> dict[int, str] | None:
    """``{fd: readlink target}`` for every open descriptor of ``pid``.

    The directory is opened once and every link read relative to it (``dir_fd``), which
    saves the kernel a path walk per descriptor. None if the process is gone or its fd
    directory is not readable; fds closed while we list are skipped.
    """
    try:
        dir_fd = os.open(f"{proc_root}/{pid}/fd", _DIR_FLAGS)
    except OSError as error:
        if _gone(error):
            return None
        raise
    links: dict[int, str] = {}
    try:
        names = os.listdir(dir_fd)
        readlink = os.readlink
        for name in names:
            try:
                links[int(name)] = readlink(name, dir_fd=dir_fd)
            except OSError as error:
                if not _gone(error):
                    raise
    except OSError as error:
        if _gone(error):
            return None
        raise
    finally:
        os.close(dir_fd)
    return links


def fd_lstat_mode(pid: int, fd: int, proc_root: str = PROC) -> str:
    """Open mode of a descriptor (``r``, ``w``, ``rw``) from the permission bits of its
    /proc link, as osquery's process_open_pipes does; ``-`` if the fd is gone."""
    try:
        st = os.lstat(f"{proc_root}/{pid}/fd/{fd}")
    except OSError as error:
        if _gone(error):
            return "-"
        raise
    return open_mode(st.st_mode)


def fd_stat(pid: int, fd: int, proc_root: str = PROC) -> os.stat_result | None:
    """stat() of what the descriptor points to (follows the magic link, so it also works
    for deleted files and files in other mount namespaces)."""
    try:
        return os.stat(f"{proc_root}/{pid}/fd/{fd}")
    except OSError as error:
        if _gone(error):
            return None
        raise


def open_mode(st_mode: int) -> str:
    mode = ""
    if st_mode & (stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH):
        mode += "r"
    if st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        mode += "w"
    return mode


def link_inode(target: str, prefix: str) -> int | None:
    """Inode out of an anonymous link target such as ``pipe:[1234]`` (prefix ``pipe:[``)."""
    if target.startswith(prefix) and target.endswith("]"):
        digits = target[len(prefix) : -1]
        if digits.isdigit():
            return int(digits)
    return None


def namespace_inode(pid: int, name: str, proc_root: str = PROC) -> int | None:
    """Inode of ``/proc/<pid>/ns/<name>`` (``net:[4026531840]``)."""
    target = read_link(f"{proc_root}/{pid}/ns/{name}")
    if target is None:
        return None
    return link_inode(target, f"{name}:[")


# ---------------------------------------------------------------- per-process files


class ProcStat(NamedTuple):
    """Fields of /proc/<pid>/stat that osquery reports."""

    state: str
    ppid: int
    pgrp: int
    utime: int
    stime: int
    nice: int
    threads: int
    starttime: int
    flags: int


PF_KTHREAD = 0x00200000


def parse_stat(text: str) -> ProcStat | None:
    """Parse /proc/<pid>/stat; the command name may contain spaces and ')' so fields are
    counted from the last ')'."""
    end = text.rfind(")")
    if end < 0:
        return None
    fields = text[end + 2 :].split()
    if len(fields) <= 19:
        return None
    try:
        return ProcStat(
            state=fields[0],
            ppid=int(fields[1]),
            pgrp=int(fields[2]),
            flags=int(fields[6]),
            utime=int(fields[11]),
            stime=int(fields[12]),
            nice=int(fields[16]),
            threads=int(fields[17]),
            starttime=int(fields[19]),
        )
    except ValueError:
        return None


class ProcStatus(NamedTuple):
    name: str
    uid: int | None
    euid: int | None
    suid: int | None
    gid: int | None
    egid: int | None
    sgid: int | None
    resident_size: int | None
    total_size: int | None


def _status_field(text: str, key: str) -> str | None:
    """Value of ``Key:`` in a status file; str.find is several times faster than
    splitting ~55 lines or a multiline regex, and this runs once per process."""
    start = 0 if text.startswith(key) else text.find("\n" + key) + 1
    if start == 0 and not text.startswith(key):
        return None
    start += len(key)
    end = text.find("\n", start)
    return text[start : end if end >= 0 else None].strip()


def parse_status(text: str) -> ProcStatus:
    """Parse /proc/<pid>/status.

    Memory mirrors osquery, which strips the " kB" unit and appends "000": sizes are
    kB x 1000, not x 1024.
    """
    uids = _id_triplet(_status_field(text, "Uid:"))
    gids = _id_triplet(_status_field(text, "Gid:"))
    return ProcStatus(
        name=_status_field(text, "Name:") or "",
        uid=uids[0],
        euid=uids[1],
        suid=uids[2],
        gid=gids[0],
        egid=gids[1],
        sgid=gids[2],
        resident_size=_kb_times_1000(_status_field(text, "VmRSS:")),
        total_size=_kb_times_1000(_status_field(text, "VmSize:")),
    )


def _id_triplet(value: str | None) -> tuple[int | None, int | None, int | None]:
    parts = value.split() if value else []
    if len(parts) != 4:
        return (None, None, None)
    return (int(parts[0]), int(parts[1]), int(parts[2]))


def _kb_times_1000(value: str | None) -> int | None:
    if not value:
        return None
    number = value.split()[0]
    return int(number) * 1000 if number.isdigit() else None


def cmdline_text(raw: bytes) -> str:
    """NUL-separated argv joined by spaces and trimmed, as osquery reports ``cmdline``."""
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()


class ProcIo(NamedTuple):
    read_bytes: int | None
    write_bytes: int | None
    cancelled_write_bytes: int | None


_IO_FIELDS = re.compile(r"^(read_bytes|write_bytes|cancelled_write_bytes): (\d+)$", re.MULTILINE)


def parse_io(text: str) -> ProcIo:
    values = {key: int(value) for key, value in _IO_FIELDS.findall(text)}
    return ProcIo(
        values.get("read_bytes"), values.get("write_bytes"), values.get("cancelled_write_bytes")
    )


def parse_cgroup(text: str) -> str:
    """Path of the first cgroup line (``0::/user.slice`` -> ``/user.slice``)."""
    first = text.split("\n", 1)[0]
    parts = first.split(":", 2)
    return parts[2] if len(parts) == 3 else ""


# ---------------------------------------------------------------- system-wide files


def read_uptime(proc_root: str = PROC) -> float | None:
    text = read_text(f"{proc_root}/uptime")
    if not text:
        return None
    try:
        return float(text.split()[0])
    except (ValueError, IndexError):
        return None


def boot_time(proc_root: str = PROC) -> int | None:
    """Boot time in UNIX seconds the way osquery computes it (now - whole uptime seconds),
    so ``processes.start_time`` values match osquery's."""
    uptime = read_uptime(proc_root)
    if uptime is None:
        return None
    return int(time.time()) - int(uptime)


CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- /proc/<pid>/net/*


class InetSocket(NamedTuple):
    inode: int
    family: int
    protocol: int
    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    state: str


class UnixSocketEntry(NamedTuple):
    inode: int
    protocol: int
    type: int
    listening: bool
    st: int
    path: str


class PacketSocket(NamedTuple):
    inode: int
    protocol: int


TCP_STATES = (
    "UNKNOWN",
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSED",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
)

#: (protocol number, file stem) in the order osquery reads them (its std::map order).
INET_PROTOCOLS = (
    (1, "icmp"),  # IPPROTO_ICMP
    (6, "tcp"),  # IPPROTO_TCP
    (17, "udp"),  # IPPROTO_UDP
    (136, "udplite"),  # IPPROTO_UDPLITE
    (255, "raw"),  # IPPROTO_RAW
)


def decode_inet_address(encoded: str, family: int) -> str:
    """Address from /proc/net/{tcp,udp,...}: 32-bit words in host byte order."""
    try:
        if family == socket.AF_INET and len(encoded) == 8:
            return socket.inet_ntop(socket.AF_INET, struct.pack("=I", int(encoded, 16)))
        if family == socket.AF_INET6 and len(encoded) == 32:
            words = [int(encoded[i : i + 8], 16) for i in range(0, 32, 8)]
            return socket.inet_ntop(socket.AF_INET6, struct.pack("=4I", *words))
    except ValueError:
        pass
    return ""


def _hex_port(encoded: str) -> int:
    return int(encoded, 16) if len(encoded) == 4 else 0


def parse_net_inet(text: str, family: int, protocol: int) -> list[InetSocket]:
    """Rows of /proc/<pid>/net/{tcp,udp,raw,icmp,udplite}[6]; state only for TCP."""
    lines = text.split("\n")
    if not lines or not lines[0].lstrip().startswith(("sl", "sk")):
        return []
    result = []
    is_tcp = protocol == 6
    for line in lines[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        local_addr, _, local_port = fields[1].partition(":")
        remote_addr, _, remote_port = fields[2].partition(":")
        state = ""
        if is_tcp:
            try:
                number = int(fields[3], 16)
            except ValueError:
                number = 0
            state = TCP_STATES[number] if 0 < number < len(TCP_STATES) else "UNKNOWN"
        if not fields[9].isdigit():
            continue
        result.append(
            InetSocket(
                inode=int(fields[9]),
                family=family,
                protocol=protocol,
                local_address=decode_inet_address(local_addr, family),
                local_port=_hex_port(local_port),
                remote_address=decode_inet_address(remote_addr, family),
                remote_port=_hex_port(remote_port),
                state=state,
            )
        )
    return result


SO_ACCEPTCON = 0x10000


def parse_net_unix(text: str) -> list[UnixSocketEntry]:
    """Rows of /proc/<pid>/net/unix.

    Unlike osquery (which splits on spaces and keeps the first word) the path is the
    rest of the line, so socket paths containing spaces are reported whole.
    """
    lines = text.split("\n")
    if not lines or not lines[0].startswith("Num"):
        return []
    result = []
    for line in lines[1:]:
        fields = line.split(None, 7)
        if len(fields) < 7 or not fields[6].isdigit():
            continue
        try:
            flags = int(fields[3], 16)
            sock_type = int(fields[4], 16)
            st = int(fields[5], 16)
            protocol = int(fields[2], 16)
        except ValueError:
            continue
        result.append(
            UnixSocketEntry(
                inode=int(fields[6]),
                protocol=protocol,
                type=sock_type,
                listening=bool(flags & SO_ACCEPTCON),
                st=st,
                path=fields[7].strip() if len(fields) > 7 else "",
            )
        )
    return result


def parse_net_packet(text: str) -> list[PacketSocket]:
    lines = text.split("\n")
    if not lines or not lines[0].startswith(("sk", "sl")):
        return []
    result = []
    for line in lines[1:]:
        fields = line.split()
        if len(fields) < 9 or not fields[8].isdigit():
            continue
        try:
            protocol = int(fields[3], 16) if len(fields[3]) == 4 else 0
        except ValueError:
            protocol = 0
        result.append(PacketSocket(inode=int(fields[8]), protocol=protocol))
    return result
