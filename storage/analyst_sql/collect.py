"""The answer to analyst SQL: JSON values, and the caps on rows and bytes.

Every database value becomes a JSON value here, so an unusual type (BLOB, bytea,
numeric, interval, UUID, array, JSON) is never a serialisation error later: bytes as
hex, numbers as numbers (strings when JSON cannot hold them exactly), the rest as text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import orjson

from storage.analyst_sql.refused import Refused

MiB = 1024 * 1024
INT64 = range(-(2**63), 2**63)


@dataclass(frozen=True)
class Caps:
    """What one analyst statement may take and return."""

    rows: int = 10_000
    value_bytes: int = 1 * MiB
    total_bytes: int = 16 * MiB
    columns: int = 100
    timeout_s: float = 10.0


@dataclass(frozen=True)
class SQLResult:
    columns: list[str]
    rows: list[dict[str, Any]]
    truncated: bool
    reason: str | None = None


def first_line(text: str, limit: int = 500) -> str:
    """A database message for the analyst: its first line, cut short (messages may quote
    a value the query built)."""
    line = (text.strip().splitlines() or [""])[0]
    return line if len(line) <= limit else line[:limit] + "..."


def too_big(column: str, row: int, caps: Caps) -> Refused:
    return Refused(
        f"column {column!r} of row {row} holds more than {caps.value_bytes} bytes;"
        " select a substr() of it"
    )


def json_value(value: Any) -> Any:
    """``value`` as something orjson writes without loss or error."""
    if value is None or isinstance(value, bool | str | orjson.Fragment):
        return value
    if isinstance(value, int):
        return value if value in INT64 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    return str(value)  # UUID, network addresses, ranges, ...


def _decimal(value: Decimal) -> Any:
    if not value.is_finite():
        return str(value)
    if value == value.to_integral_value():
        whole = int(value)
        return whole if whole in INT64 else str(value)
    return float(value)


def unique_names(columns: Sequence[str]) -> list[str]:
    """Column names made unique (``a``, ``a_2``) so no value is lost in a row object."""
    seen: dict[str, int] = {}
    names = []
    for column in columns:
        name = column
        while name in seen:
            seen[column] += 1
            name = f"{column}_{seen[column]}"
        seen.setdefault(name, 1)
        names.append(name)
    return names


class Collector:
    """Rows as JSON objects until the row or byte cap; then ``truncated`` and why."""

    def __init__(self, columns: Sequence[str], caps: Caps) -> None:
        self.columns = unique_names(columns)
        self.caps = caps
        self.rows: list[dict[str, Any]] = []
        self.size = 0
        self.reason: str | None = None

    @property
    def full(self) -> bool:
        return self.reason is not None

    @property
    def next_row(self) -> int:
        """The 1-based number of the row to come (for error messages)."""
        return len(self.rows) + 1

    def add(self, values: Sequence[Any]) -> bool:
        """Keep one row; False (and ``reason`` set) once a cap stops the answer."""
        if len(self.rows) >= self.caps.rows:
            self.reason = f"stopped at {self.caps.rows} rows (the limit)"
            return False
        row = {name: json_value(v) for name, v in zip(self.columns, values, strict=True)}
        size = len(orjson.dumps(row))
        if self.size + size > self.caps.total_bytes:
            self.stop_at_bytes()
            return False
        self.rows.append(row)
        self.size += size
        return True

    def stop_at_bytes(self) -> None:
        self.reason = (
            f"stopped at {len(self.rows)} rows: the answer would exceed"
            f" {self.caps.total_bytes} bytes"
        )

    def result(self) -> SQLResult:
        return SQLResult(self.columns, self.rows, self.full, self.reason)
