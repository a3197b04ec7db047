"""Rows in osquery's string form, and osqueryi's ``--json`` output.

osquery logs, distributed results and extension responses carry every value as a
string, with SQL NULL as ``""`` (``--logger_numerics`` aside). ``osqueryi --json``
prints one array per invocation: ``[``, one compact object per line indented by two
spaces with keys sorted (a std::map), ``]`` -- and ``[``, blank line, ``]`` when empty.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def osquery_string(value: Any) -> str:
    """One value as osquery serialises it: NULL -> "", numbers in decimal."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def string_row(row: Mapping[str, Any], columns: Sequence[str] | None = None) -> dict[str, str]:
    keys = columns if columns is not None else list(row)
    return {key: osquery_string(row.get(key)) for key in keys}


def string_rows(
    rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None
) -> list[dict[str, str]]:
    """Rows with every value a string, in ``columns`` order (default: each row's keys)."""
    return [string_row(row, columns) for row in rows]


def osqueryi_json(rows: Iterable[Mapping[str, Any]]) -> str:
    """Exactly what ``osqueryi --json`` prints for these rows (trailing newline included)."""
    lines = [
        "  "
        + json.dumps(
            {k: osquery_string(v) for k, v in row.items()},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        for row in rows
    ]
    return "[\n" + ",\n".join(lines) + "\n]\n"
