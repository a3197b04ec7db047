"""Pure parsers for the account, release and login-record files under ``/etc`` and ``/run``.

They read files directly (not through NSS) so that a root path can be swapped in, and so
that a query never blocks on a remote directory service.
"""

from __future__ import annotations

import struct
from typing import NamedTuple


class PasswdEntry(NamedTuple):
    username: str
    uid: int
    gid: int
    gecos: str
    directory: str
    shell: str


class GroupEntry(NamedTuple):
    groupname: str
    gid: int


def parse_passwd(text: str) -> list[PasswdEntry]:
    """``name:pw:uid:gid:gecos:dir:shell`` lines; NIS ``+``/``-`` lines are skipped."""
    result = []
    for line in text.splitlines():
        if not line or line.startswith(("#", "+", "-")):
            continue
        parts = line.split(":")
        if len(parts) < 7:
            continue
        try:
            uid, gid = int(parts[2]), int(parts[3])
        except ValueError:
            continue
        result.append(PasswdEntry(parts[0], uid, gid, parts[4], parts[5], parts[6]))
    return result


def parse_group(text: str) -> list[GroupEntry]:
    result = []
    for line in text.splitlines():
        if not line or line.startswith(("#", "+", "-")):
            continue
        parts = line.split(":")
        if len(parts) < 3:
            continue
        try:
            gid = int(parts[2])
        except ValueError:
            continue
        result.append(GroupEntry(parts[0], gid))
    return result


def signed32(value: int) -> int:
    """The value as a C int32 (uid 4294967294 -> -2), for ``uid_signed``/``gid_signed``."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def parse_os_release(text: str) -> dict[str, str]:
    """KEY=value pairs with one level of surrounding double quotes removed."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or key.startswith("#"):
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values


# glibc ``struct utmp`` on 64-bit Linux: 384 bytes.
_UTMP = struct.Struct("<hxxi32s4s32s256shhiii16s20s")
UTMP_SIZE = _UTMP.size

#: ut_type values -> osquery's logged_in_users.type names.
LOGIN_TYPES = {
    0: "empty",
    1: "runlevel",
    2: "boot_time",
    3: "new_time",
    4: "old_time",
    5: "init",
    6: "login",
    7: "user",
    8: "dead",
    9: "accounting",
}


class UtmpRecord(NamedTuple):
    type: int
    pid: int
    line: str
    user: str
    host: str
    time: int


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def parse_utmp(data: bytes) -> list[UtmpRecord]:
    """Fixed-size utmp records; a trailing partial record is ignored."""
    result = []
    for offset in range(0, len(data) - UTMP_SIZE + 1, UTMP_SIZE):
        fields = _UTMP.unpack_from(data, offset)
        ut_type, pid, line, _id, user, host = fields[:6]
        tv_sec = fields[9]
        result.append(UtmpRecord(ut_type, pid, _cstr(line), _cstr(user), _cstr(host), tv_sec))
    return result


def pack_utmp(record: UtmpRecord) -> bytes:
    """One binary utmp record (what login(3) writes); used to build test files."""
    return _UTMP.pack(
        record.type,
        record.pid,
        record.line.encode(),
        b"",
        record.user.encode(),
        record.host.encode(),
        0,
        0,
        0,
        record.time,
        0,
        b"",
        b"",
    )
