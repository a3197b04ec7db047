"""Normalise osquery result log lines into runs, at the edge.

osqueryd logs a scheduled query's execution ("run") in one of several shapes
(``../shared/osquery/protocol.md`` section 2):

* event format: one line per row, ``columns`` + ``action`` added/removed, removed first;
* batch format: one line with ``diffResults: {removed, added}``;
* snapshot: one line with ``snapshot: [rows]``, or one line per row with
  ``action: "snapshot"`` (``--logger_snapshot_event_type``).

Consecutive lines of one run share (name, epoch, counter, unixTime); this module groups
them into :class:`Run` objects with string-valued rows (``numerics`` true or false give
the same row) so the store never sees the wire shapes. A run is *full state* when it
carries every current row: a snapshot, or a ``counter == 0`` baseline (which the store
decides, since it needs the query's history to tell a baseline from a counter-0 diff).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from fleetctl.errors import BadRequest

_COMMON_KEYS = frozenset(
    {
        "name",
        "hostIdentifier",
        "calendarTime",
        "unixTime",
        "epoch",
        "counter",
        "numerics",
        "decorations",
        "columns",
        "action",
        "snapshot",
        "diffResults",
    }
)


@dataclass(frozen=True)
class QueryName:
    """A logged query name split into pack and query (``pack`` is None for the schedule)."""

    name: str
    pack: str | None
    query: str


def split_query_name(name: str, known_packs: Iterable[str] = ()) -> QueryName:
    """Split ``pack_<pack>_<query>`` or ``pack/<pack>/<query>``.

    The default delimiter ``_`` is ambiguous when pack names contain it; a known pack
    name that matches the prefix wins, else the first delimiter after ``pack`` splits.
    """
    for delim in ("/", "_"):
        prefix = "pack" + delim
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix) :]
        for pack in sorted(known_packs, key=len, reverse=True):
            if rest.startswith(pack + delim) and len(rest) > len(pack) + 1:
                return QueryName(name, pack, rest[len(pack) + 1 :])
        pack, sep, query = rest.partition(delim)
        if sep and pack and query:
            return QueryName(name, pack, query)
    return QueryName(name, None, name)


@dataclass
class Run:
    """One execution of one scheduled query as far as this batch carries it."""

    name: str
    epoch: int
    counter: int
    unix_time: int
    snapshot: bool
    host_identifiers: set[str]
    decorations: dict[str, str]
    added: list[dict[str, str]] = field(default_factory=list)
    removed: list[dict[str, str]] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, int, int, int, bool]:
        return (self.name, self.epoch, self.counter, self.unix_time, self.snapshot)

    @property
    def looks_like_baseline(self) -> bool:
        """counter 0 with additions only. Some osquery versions keep the counter at 0
        for every diff (see the msticpy fixture); the store tells those apart."""
        return not self.snapshot and self.counter == 0 and not self.removed


@dataclass(frozen=True)
class StatusLine:
    """One osqueryd status log line."""

    unix_time: int
    severity: int
    filename: str
    line: int
    message: str
    version: str
    host_identifier: str | None
    decorations: dict[str, str] | None


def row_hash(row: Mapping[str, str]) -> str:
    """Stable identity of a row: BLAKE2b of its canonical (sorted, string) JSON."""
    return hashlib.blake2b(
        orjson.dumps(row, option=orjson.OPT_SORT_KEYS), digest_size=16
    ).hexdigest()


def line_digest(line: Any) -> bytes:
    """8-byte digest of one log line, for spotting redelivered batches."""
    return hashlib.blake2b(orjson.dumps(line, option=orjson.OPT_SORT_KEYS), digest_size=8).digest()


def _str(value: Any) -> str:
    """osquery's string form of a value: numerics=true numbers become their text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    raise BadRequest(f"column values must be scalars, got {type(value).__name__}")


def _row(obj: Any, where: int) -> dict[str, str]:
    if not isinstance(obj, dict):
        raise BadRequest(f"data[{where}]: a row must be an object, got {type(obj).__name__}")
    if all(type(v) is str for v in obj.values()):  # numerics=false: already osquery's form
        return obj
    return {str(k): _str(v) for k, v in obj.items()}


def _int(line: Mapping[str, Any], key: str, where: int, default: int | None = None) -> int:
    """An integer field. osquery 2.x wrote ``unixTime``/``epoch``/``counter`` as decimal
    strings (see the elastic fixture), so digit strings are accepted; anything else is not.
    """
    value = line.get(key, default)
    if type(value) is int:
        return value
    if value is None:
        raise BadRequest(f"data[{where}]: missing {key!r}")
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(
            f"data[{where}]: {key!r} must be an integer, got {type(value).__name__} {value!r:.40}"
        )
    return value


def _decorations(line: Mapping[str, Any]) -> dict[str, str]:
    """Nested ``decorations`` plus any unknown top-level keys (``--decorations_top_level``)."""
    nested = line.get("decorations") or {}
    merged = {str(k): _str(v) for k, v in nested.items()}
    for key, value in line.items():
        if key not in _COMMON_KEYS and not isinstance(value, dict | list):
            merged[key] = _str(value)
    return merged


def _header(line: Any, where: int) -> tuple[str, int, int, int, str | None]:
    """(name, epoch, counter, unixTime, hostIdentifier) of a line, validated."""
    if not isinstance(line, dict):
        raise BadRequest(f"data[{where}]: each log line must be an object")
    name = line.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"data[{where}]: 'name' must be a non-empty string")
    host = line.get("hostIdentifier")
    if host is not None and not isinstance(host, str):
        raise BadRequest(f"data[{where}]: 'hostIdentifier' must be a string")
    if not isinstance(line.get("numerics", False), bool):
        raise BadRequest(f"data[{where}]: 'numerics' must be a boolean")
    if not isinstance(line.get("decorations", {}), dict):
        raise BadRequest(f"data[{where}]: 'decorations' must be an object")
    return (
        name,
        _int(line, "epoch", where, 0),
        _int(line, "counter", where, 0),
        _int(line, "unixTime", where),
        host,
    )


def parse_result_lines(lines: list[Any]) -> list[Run]:
    """Group result lines into runs; raise :class:`BadRequest` naming the bad line."""
    runs: list[Run] = []
    for index, line in enumerate(lines):
        name, epoch, counter, unix_time, host = _header(line, index)
        if "columns" in line:
            _append_event_line(runs, line, index, (name, epoch, counter, unix_time), host)
        elif "snapshot" in line:
            rows = line["snapshot"]
            if not isinstance(rows, list):
                raise BadRequest(f"data[{index}]: 'snapshot' must be a list")
            run = Run(name, epoch, counter, unix_time, True, _hosts(host), _decorations(line))
            run.added = [_row(r, index) for r in rows]
            runs.append(run)
        elif "diffResults" in line:
            diff = line["diffResults"]
            if not isinstance(diff, dict):
                raise BadRequest(f"data[{index}]: 'diffResults' must be an object")
            added, removed = diff.get("added", []), diff.get("removed", [])
            if not isinstance(added, list) or not isinstance(removed, list):
                raise BadRequest(f"data[{index}]: 'diffResults.added/removed' must be lists")
            run = Run(name, epoch, counter, unix_time, False, _hosts(host), _decorations(line))
            run.added = [_row(r, index) for r in added]
            run.removed = [_row(r, index) for r in removed]
            runs.append(run)
        else:
            raise BadRequest(
                f"data[{index}]: not a result line (no columns, diffResults or snapshot)"
            )
    return runs


def _append_event_line(
    runs: list[Run],
    line: Mapping[str, Any],
    index: int,
    head: tuple[str, int, int, int],
    host: str | None,
) -> None:
    action = line.get("action")
    if action not in ("added", "removed", "snapshot"):
        raise BadRequest(f"data[{index}]: 'action' must be added, removed or snapshot")
    row = _row(line["columns"], index)
    snapshot = action == "snapshot"
    last = runs[-1] if runs else None
    if last is None or last.key != (*head, snapshot):
        last = Run(*head, snapshot, set(), _decorations(line))
        runs.append(last)
    if host:
        last.host_identifiers.add(host)
    (last.removed if action == "removed" else last.added).append(row)


def parse_status_lines(lines: list[Any]) -> list[StatusLine]:
    """Validate status log lines."""
    out: list[StatusLine] = []
    for index, line in enumerate(lines):
        where = f"data[{index}]"
        if not isinstance(line, dict):
            raise BadRequest(f"{where}: each status line must be an object")
        message = line.get("message", "")
        if not isinstance(message, str):
            raise BadRequest(f"{where}: 'message' must be a string")
        host = line.get("hostIdentifier")
        if host is not None and not isinstance(host, str):
            raise BadRequest(f"{where}: 'hostIdentifier' must be a string")
        decorations = line.get("decorations")
        if decorations is not None and not isinstance(decorations, dict):
            raise BadRequest(f"{where}: 'decorations' must be an object")
        out.append(
            StatusLine(
                unix_time=_int(line, "unixTime", index, 0),
                severity=_int(line, "severity", index, 0),
                filename=str(line.get("filename", "")),
                line=_int(line, "line", index, 0),
                message=message,
                version=str(line.get("version", "")),
                host_identifier=host,
                decorations={str(k): _str(v) for k, v in decorations.items()}
                if decorations
                else None,
            )
        )
    return out


def _hosts(host: str | None) -> set[str]:
    return {host} if host else set()


def iter_host_identifiers(items: Iterable[Run | StatusLine]) -> Iterator[str]:
    """Every host identifier named by any line (runs keep all of their lines' names)."""
    for item in items:
        if isinstance(item, Run):
            yield from item.host_identifiers
        elif item.host_identifier:
            yield item.host_identifier
