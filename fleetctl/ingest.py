"""Normalise osquery log lines into runs and status lines, at the edge, line by line.

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

Each line is judged on its own. osqueryd resends a batch until a post succeeds, so a
line that is malformed, out of the store's range or limits (``storage.encoding``), or
not encodable becomes a :class:`~storage.rejected.Rejection` with its reason, and the
rest of the batch is stored: one odd line never blocks a host's stream.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

import orjson

from storage.encoding import (
    BIGINT,
    INTEGER,
    KEY_CHARS,
    NAME_CHARS,
    NAME_PART_CHARS,
    STATUS_FILENAME_CHARS,
    STATUS_VERSION_CHARS,
    stored_length,
)
from storage.rejected import Rejection, verbatim
from storage.runs import QueryName as QueryName
from storage.runs import Run, StatusLine, split_query_name
from storage.runs import row_hash as row_hash

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


class LineError(ValueError):
    """One line cannot be stored as sent; the message is its quarantine reason."""


@dataclass
class ResultBatch:
    """The runs of a batch's valid lines, and its rejected lines."""

    runs: list[Run] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


# -- the body and its lines as JSON ------------------------------------------------------

MAX_DEPTH = 254  # containers orjson encodes nested


def _as_orjson_reads(text: str) -> int | float:
    """A JSON integer read as orjson reads it: one beyond 64 bits becomes a double."""
    if len(text) <= 20:
        value = int(text)
        if -(2**63) <= value < 2**64:
            return value
    return float(text)


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def lenient_loads(raw: bytes) -> Any:
    """Read JSON that orjson refused for one bad string, so that it costs its line, not
    the whole ``/log`` body.

    orjson refuses a whole body for one lone surrogate escape (``"\\ud800"``), one byte
    that is not UTF-8 or one number beyond a double. The standard library reads it, with
    bytes that are not UTF-8 as lone surrogates (``surrogateescape``) and integers as
    orjson reads them, and :func:`line_digests` finds the lines holding such values.
    Raises ``ValueError`` (or ``RecursionError``) for text that is not JSON at all.
    """
    return json.loads(
        raw.decode("utf-8", "surrogateescape"),
        parse_int=_as_orjson_reads,
        parse_constant=_not_json,
    )


def line_digests(lines: Sequence[Any]) -> tuple[list[bytes], dict[int, str]]:
    """An 8-byte digest of each line, for spotting redelivered batches, and why each line
    that orjson cannot encode is not stored (``{position: reason}``).

    Such a line holds a lone surrogate, an integer beyond 64 bits or nesting beyond 254
    levels; it still gets a digest, of its ASCII JSON text, so a resent batch is still
    recognised and the line quarantined once.
    """
    digests: list[bytes] = []
    problems: dict[int, str] = {}
    for position, line in enumerate(lines):
        try:
            text = orjson.dumps(line, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            text = verbatim(line, sort_keys=True).encode()
            problems[position] = _encoding_problem(line)
        digests.append(hashlib.blake2b(text, digest_size=8).digest())
    return digests, problems


def _is_unicode(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _encoding_problem(line: Any) -> str:
    """Why orjson cannot encode ``line``, naming where (walked without recursion)."""
    stack: list[tuple[Any, str, int]] = [(line, "line", 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, dict | list) and depth >= MAX_DEPTH:
            return f"{where}: nested deeper than {MAX_DEPTH} levels"
        if isinstance(item, dict):
            for key, value in item.items():
                if not _is_unicode(key):
                    return f"{where}: a key is not valid Unicode (lone surrogate in {key!r:.60})"
                stack.append((value, f"{where}.{key:.60}" if depth < 2 else where, depth + 1))
        elif isinstance(item, list):
            stack.extend((value, where, depth + 1) for value in item)
        elif isinstance(item, str) and not _is_unicode(item):
            return f"{where}: not valid Unicode (lone surrogate in {item!r:.60})"
        elif isinstance(item, int) and not -(2**63) <= item < 2**64:
            return f"{where}: an integer beyond 64 bits"
    return "not encodable as JSON"


# -- one line's fields --------------------------------------------------------------------


def _str(value: Any, where: str) -> str:
    """osquery's string form of a value: numerics=true numbers become their text.
    ``where`` names the value in a rejection (``column 'pid'``)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LineError(f"{where:.80}: the number is beyond a double")
        return repr(value)
    raise LineError(f"{where:.80} must be a scalar, got {type(value).__name__}")


def _check_keys(obj: Mapping[str, Any], what: str) -> None:
    """Column names and decoration keys fit the store (checked only when one is long)."""
    if obj and max(map(len, obj)) > KEY_CHARS // 2:
        for key in obj:
            if stored_length(key) > KEY_CHARS:
                raise LineError(
                    f"a {what} of {len(key)} characters is over the store's {KEY_CHARS}"
                )


def _row(obj: Any) -> dict[str, str]:
    if not isinstance(obj, dict):
        raise LineError(f"a row must be an object, got {type(obj).__name__}")
    _check_keys(obj, "column name")
    if all(type(v) is str for v in obj.values()):  # numerics=false: already osquery's form
        return obj
    return {k: _str(v, f"column {k!r}") for k, v in obj.items()}


def _int(
    line: Mapping[str, Any],
    key: str,
    default: int | None = None,
    bounds: tuple[int, int] = (0, BIGINT[1]),
) -> int:
    """An integer field within ``bounds``. osquery 2.x wrote ``unixTime``/``epoch``/
    ``counter`` as decimal strings (see the elastic fixture), so digit strings are
    accepted; anything else is not. osquery writes these unsigned, so the default bounds
    are what a BIGINT holds of them."""
    value = line.get(key, default)
    low, high = bounds
    if type(value) is int and low <= value <= high:
        return value
    if value is None:
        raise LineError(f"missing {key!r}")
    number: int | float = value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        number = int(value) if len(value) <= 20 else math.inf
    elif isinstance(value, float) and abs(value) >= 2**63:
        pass  # an integer beyond 64 bits reads as a double: out of range, not a fraction
    elif type(value) is not int:
        raise LineError(f"{key!r} must be an integer, got {type(value).__name__} {value!r:.40}")
    if not low <= number <= high:
        raise LineError(f"{key!r} is out of range: {value!r:.40} is not in {low}..{high}")
    return int(number)


def _decorations(line: Mapping[str, Any]) -> dict[str, str]:
    """Nested ``decorations`` plus any unknown top-level keys (``--decorations_top_level``)."""
    nested = line.get("decorations") or {}
    if all(type(v) is str for v in nested.values()):
        merged = dict(nested)
    else:
        merged = {str(k): _str(v, f"decoration {k!r}") for k, v in nested.items()}
    if line.keys() - _COMMON_KEYS:  # rare: checked at C speed first
        for key, value in line.items():
            if key not in _COMMON_KEYS and not isinstance(value, dict | list):
                merged[key] = _str(value, f"decoration {key!r}")
    _check_keys(merged, "decoration key")
    return merged


def _check_name(name: str, known_packs: Sequence[str]) -> None:
    """The name, and its pack and query parts, fit their columns."""
    if len(name) <= NAME_PART_CHARS // 2:
        return
    if stored_length(name) > NAME_CHARS:
        raise LineError(f"a query name of {len(name)} characters is over the store's {NAME_CHARS}")
    split = split_query_name(name, known_packs)
    for part in (split.pack or "", split.query):
        if stored_length(part) > NAME_PART_CHARS:
            raise LineError(
                f"a pack or query name of {len(part)} characters is over the store's "
                f"{NAME_PART_CHARS}"
            )


def _header(line: Any, known_packs: Sequence[str]) -> tuple[str, int, int, int, str | None]:
    """(name, epoch, counter, unixTime, hostIdentifier) of a line, validated."""
    if not isinstance(line, dict):
        raise LineError("each log line must be an object")
    name = line.get("name")
    if not isinstance(name, str) or not name:
        raise LineError("'name' must be a non-empty string")
    _check_name(name, known_packs)
    host = line.get("hostIdentifier")
    if host is not None and not isinstance(host, str):
        raise LineError("'hostIdentifier' must be a string")
    if not isinstance(line.get("numerics", False), bool):
        raise LineError("'numerics' must be a boolean")
    if not isinstance(line.get("decorations", {}), dict):
        raise LineError("'decorations' must be an object")
    return (
        name,
        _int(line, "epoch", 0),
        _int(line, "counter", 0),
        _int(line, "unixTime"),
        host,
    )


def _rows(value: Any, what: str) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise LineError(f"{what!r} must be a list")
    return [_row(r) for r in value]


def _add_result_line(
    runs: list[Run], line: Any, index: int, known_packs: Sequence[str], foreign: Set[str]
) -> None:
    """Add one result line to ``runs``, or raise :class:`LineError` having added nothing.

    Decorations are read (and must be valid) only where a run starts: the store keeps
    those of a run's first line."""
    name, epoch, counter, unix_time, host = _header(line, known_packs)
    if host in foreign:
        raise LineError(f"names host {host!r:.80}, another enrolled host")
    head = (name, epoch, counter, unix_time)
    if "columns" in line:
        action = line.get("action")
        if action not in ("added", "removed", "snapshot"):
            raise LineError("'action' must be added, removed or snapshot")
        row = _row(line["columns"])
        run = runs[-1] if runs else None
        if run is None or run.key != (*head, action == "snapshot"):
            run = Run(*head, action == "snapshot", set(), _decorations(line))
            runs.append(run)
        (run.removed if action == "removed" else run.added).append(row)
    elif "snapshot" in line:
        rows = _rows(line["snapshot"], "snapshot")
        run = Run(*head, True, set(), _decorations(line), added=rows)
        runs.append(run)
    elif "diffResults" in line:
        diff = line["diffResults"]
        if not isinstance(diff, dict):
            raise LineError("'diffResults' must be an object")
        added = _rows(diff.get("added", []), "diffResults.added")
        removed = _rows(diff.get("removed", []), "diffResults.removed")
        run = Run(*head, False, set(), _decorations(line), added=added, removed=removed)
        runs.append(run)
    else:
        raise LineError("not a result line (no columns, diffResults or snapshot)")
    if host:
        run.host_identifiers.add(host)
    run.lines.append(index)


def _name_of(line: Any) -> str:
    name = line.get("name") if isinstance(line, dict) else None
    return name if isinstance(name, str) else ""


def host_identifiers(lines: Iterable[Any]) -> set[str]:
    """The host identifiers the lines name that an enrolled host could have, to look the
    hosts up before reading the lines. Text with NUL or lone surrogates names no host:
    enrollment could not store it on PostgreSQL (the same rule applies on SQLite)."""
    named = (line.get("hostIdentifier") for line in lines if isinstance(line, dict))
    return {
        ident
        for ident in named
        if isinstance(ident, str) and ident and "\0" not in ident and _is_unicode(ident)
    }


def parse_result_lines(
    lines: Sequence[Any],
    known_packs: Sequence[str] = (),
    *,
    start: int = 0,
    refused: Mapping[int, str] | None = None,
    foreign: Set[str] = frozenset(),
) -> ResultBatch:
    """Group the valid ``lines`` into runs and reject the others, naming why.

    ``lines`` begin at ``data[start]``; positions are ``data``'s. ``refused`` are reasons
    already known by position (default: :func:`line_digests`'s); ``foreign`` are host
    identifiers of other enrolled hosts, whose lines are not this host's to store.
    """
    if refused is None:
        refused = {start + i: why for i, why in line_digests(lines)[1].items()}
    batch = ResultBatch()
    for index, line in enumerate(lines, start):
        reason = refused.get(index)
        if reason is None:
            try:
                _add_result_line(batch.runs, line, index, known_packs, foreign)
                continue
            except LineError as exc:
                reason = str(exc)
        batch.rejected.append(Rejection(index, reason, _name_of(line)))
    return batch


def _status_line(line: Any, index: int, foreign: Set[str]) -> StatusLine:
    """One status line, validated; :class:`LineError` says why not."""
    if not isinstance(line, dict):
        raise LineError("each status line must be an object")
    message = line.get("message", "")
    if not isinstance(message, str):
        raise LineError("'message' must be a string")
    host = line.get("hostIdentifier")
    if host is not None and not isinstance(host, str):
        raise LineError("'hostIdentifier' must be a string")
    if host in foreign:
        raise LineError(f"names host {host!r:.80}, another enrolled host")
    decorations = line.get("decorations")
    if decorations is not None and not isinstance(decorations, dict):
        raise LineError("'decorations' must be an object")
    filename = _limited(line, "filename", STATUS_FILENAME_CHARS)
    version = _limited(line, "version", STATUS_VERSION_CHARS)
    stored = (
        {str(k): _str(v, f"decoration {k!r}") for k, v in decorations.items()}
        if decorations
        else None
    )
    if stored:
        _check_keys(stored, "decoration key")
    return StatusLine(
        unix_time=_int(line, "unixTime", 0),
        severity=_int(line, "severity", 0, INTEGER),
        filename=filename,
        line=_int(line, "line", 0, INTEGER),
        message=message,
        version=version,
        host_identifier=host,
        decorations=stored,
        index=index,
    )


def _limited(line: Mapping[str, Any], key: str, limit: int) -> str:
    value = line.get(key, "")
    text = value if isinstance(value, str) else _str(value, repr(key))
    if stored_length(text) > limit:
        raise LineError(f"{key!r} of {len(text)} characters is over the store's {limit}")
    return text


def parse_status_lines(
    lines: Sequence[Any],
    *,
    start: int = 0,
    refused: Mapping[int, str] | None = None,
    foreign: Set[str] = frozenset(),
) -> tuple[list[StatusLine], list[Rejection]]:
    """The valid status ``lines`` and rejections of the others, as for
    :func:`parse_result_lines`."""
    if refused is None:
        refused = {start + i: why for i, why in line_digests(lines)[1].items()}
    good: list[StatusLine] = []
    rejected: list[Rejection] = []
    for index, line in enumerate(lines, start):
        reason = refused.get(index)
        if reason is None:
            try:
                good.append(_status_line(line, index, foreign))
                continue
            except LineError as exc:
                reason = str(exc)
        rejected.append(Rejection(index, reason))
    return good, rejected
