"""``users``, ``groups`` and ``logged_in_users`` from /etc/passwd, /etc/group and utmp.

Row contents follow osquery's Linux tables: ``uid_signed``/``gid_signed`` as C int32,
``pid_with_namespace`` 0, duplicate group ids reported once, utmp records of pid 1
(init's bookkeeping) skipped and unknown record types named ``unknown``.
"""

from __future__ import annotations

from typing import Any

from fleetctl.tables import _etc, _proc
from fleetctl.tables.scan import Constraints, Scan, int_values


def generate_users(constraints: Constraints, scan: Scan) -> list[dict[str, Any]]:
    text = _proc.read_text(f"{scan.etc_root}/passwd") or ""
    uids = int_values(constraints, "uid")
    names = constraints.get("username")
    rows = []
    for entry in _etc.parse_passwd(text):
        if uids is not None and entry.uid not in uids:
            continue
        if names is not None and entry.username not in names:
            continue
        rows.append(
            {
                "uid": entry.uid,
                "gid": entry.gid,
                "uid_signed": _etc.signed32(entry.uid),
                "gid_signed": _etc.signed32(entry.gid),
                "username": entry.username,
                "description": entry.gecos,
                "directory": entry.directory,
                "shell": entry.shell,
                "uuid": None,
                "pid_with_namespace": 0,
            }
        )
    return rows


def generate_groups(constraints: Constraints, scan: Scan) -> list[dict[str, Any]]:
    text = _proc.read_text(f"{scan.etc_root}/group") or ""
    gids = int_values(constraints, "gid")
    seen: set[int] = set()
    rows = []
    for entry in _etc.parse_group(text):
        if entry.gid in seen or (gids is not None and entry.gid not in gids):
            continue
        seen.add(entry.gid)
        rows.append(
            {
                "gid": entry.gid,
                "gid_signed": _etc.signed32(entry.gid),
                "groupname": entry.groupname,
                "pid_with_namespace": 0,
            }
        )
    return rows


def generate_logged_in_users(constraints: Constraints, scan: Scan) -> list[dict[str, Any]]:
    data = _proc.read_bytes(scan.utmp_path)
    if not data:
        return []
    rows = []
    for record in _etc.parse_utmp(data):
        if record.pid == 1:
            continue
        rows.append(
            {
                "type": _etc.LOGIN_TYPES.get(record.type, "unknown"),
                "user": record.user,
                "tty": record.line,
                "host": record.host,
                "time": record.time,
                "pid": record.pid,
            }
        )
    return rows
