"""Result and status log lines exactly as osqueryd writes them (``protocol.md`` section 2).

Common keys: ``name``, ``hostIdentifier``, ``calendarTime`` (``asctime`` in UTC plus
`` UTC``), ``unixTime``, ``epoch``, ``counter`` (numbers), ``numerics`` and
``decorations`` (omitted when empty; merged into the top level with
``--decorations_top_level``). Event format: one line per row with ``columns`` and
``action``, removed rows first. Batch format: one line with ``diffResults``. Snapshot:
one line with ``snapshot`` and ``action: "snapshot"``, every run, even when empty (or
one line per row with ``--logger_snapshot_event_type``). Columns are sorted by name,
as osquery's rows are ``std::map``s.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleetctl.engine import osquery_string


def calendar_time(unix_time: int) -> str:
    """``Tue Sep 30 17:37:30 2014 UTC`` (osquery's ``getAsciiTime``)."""
    return time.asctime(time.gmtime(unix_time)) + " UTC"


@dataclass(frozen=True)
class Header:
    """The common keys of one query run's lines."""

    name: str
    host_identifier: str
    unix_time: int
    epoch: int
    counter: int
    numerics: bool = False
    decorations: Mapping[str, str] = field(default_factory=dict)
    decorations_top_level: bool = False

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "hostIdentifier": self.host_identifier,
            "calendarTime": calendar_time(self.unix_time),
            "unixTime": self.unix_time,
            "epoch": self.epoch,
            "counter": self.counter,
            "numerics": self.numerics,
        }
        return _decorate(out, self.decorations, self.decorations_top_level)


def _decorate(
    line: dict[str, Any], decorations: Mapping[str, str], top_level: bool
) -> dict[str, Any]:
    if decorations:
        if top_level:
            line.update(decorations)
        else:
            line["decorations"] = dict(decorations)
    return line


def columns(row: Mapping[str, Any], numerics: bool) -> dict[str, Any]:
    """A row as logged: sorted keys; strings, or numbers kept as numbers with numerics."""
    out: dict[str, Any] = {}
    for key in sorted(row):
        value = row[key]
        keep = numerics and isinstance(value, int | float) and not isinstance(value, bool)
        out[key] = value if keep else osquery_string(value)
    return out


def diff_lines(
    header: Header,
    added: Sequence[Mapping[str, Any]],
    removed: Sequence[Mapping[str, Any]],
    event_format: bool,
    baseline: bool = False,
) -> list[dict[str, Any]]:
    """The lines of one differential run: nothing when nothing changed, except that the
    batch format logs a counter-0 ``baseline`` even when it has no rows."""
    if not added and not removed and (event_format or not baseline):
        return []
    common = header.fields()
    if not event_format:
        return [
            common
            | {
                "diffResults": {
                    "removed": [columns(r, header.numerics) for r in removed],
                    "added": [columns(r, header.numerics) for r in added],
                }
            }
        ]
    lines = [
        common | {"columns": columns(r, header.numerics), "action": "removed"} for r in removed
    ]
    lines += [common | {"columns": columns(r, header.numerics), "action": "added"} for r in added]
    return lines


def snapshot_lines(
    header: Header, rows: Sequence[Mapping[str, Any]], event_format: bool
) -> list[dict[str, Any]]:
    common = header.fields()
    if event_format:
        return [
            common | {"columns": columns(r, header.numerics), "action": "snapshot"} for r in rows
        ]
    return [
        {"snapshot": [columns(r, header.numerics) for r in rows], "action": "snapshot"} | common
    ]


def status_line(
    *,
    host_identifier: str,
    unix_time: int,
    severity: int,
    filename: str,
    line: int,
    message: str,
    version: str,
    decorations: Mapping[str, str],
    top_level: bool = False,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "hostIdentifier": host_identifier,
        "calendarTime": calendar_time(unix_time),
        "unixTime": unix_time,
        "severity": severity,
        "filename": filename,
        "line": line,
        "message": message,
        "version": version,
    }
    return _decorate(out, decorations, top_level)
