"""Parse the times and durations people type: ``now``, ``1700000000``, ISO 8601, ``90d``,
``1h30m``.

A duration given where a time is expected means that long ago (``--since 1h``): the
same words work for every time option, and a bare number stays unix seconds.

Both are bounded to what the store and ``iso`` can hold: times are unix seconds from the
epoch to the last second of year 9999 (``datetime``'s limit, far inside BIGINT), and a
duration is never longer than that span. A value outside is refused here, where the
caller can answer 400, instead of overflowing SQLite's integer binding or PostgreSQL's
BIGINT deep in a query.
"""

from __future__ import annotations

import datetime as dt
import re
import time

MAX_TIME = 253_402_300_799  # 9999-12-31T23:59:59Z
_MAX_DIGITS = len(str(MAX_TIME))
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(?:\d+\s*[smhdw]\s*)+$|^\s*\d+\s*$")
_DURATION_PART = re.compile(r"(\d+)\s*([smhdw]?)")
_RELATIVE = re.compile(r"^\s*(?:\d+\s*[smhdw]\s*)+(?:ago\s*)?$")
DURATION_EXAMPLES = "90s, 15m, 1h30m, 24h, 2d, 1w"
TIME_EXAMPLES = f"now, a duration ago ({DURATION_EXAMPLES}), unix seconds or ISO 8601"
_UNIX = re.compile(r"(\d+)(\.\d+)?")


def shown(text: str, limit: int = 40) -> str:
    """``repr`` of user input for an error message, cut short: a 100 KB parameter must
    not come back as a 100 KB error."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def parse_duration(text: str) -> int:
    """``90d`` or ``1h30m`` -> seconds. A bare number is seconds."""
    if not _DURATION.match(text):
        raise ValueError(f"not a duration: {shown(text)} (use e.g. {DURATION_EXAMPLES})")
    seconds = 0
    for digits, unit in _DURATION_PART.findall(text):
        digits = digits.lstrip("0") or "0"
        if len(digits) > _MAX_DIGITS:
            raise ValueError(f"duration out of range: {shown(text)}")
        seconds += int(digits) * _UNITS[unit or "s"]
        if seconds > MAX_TIME:
            raise ValueError(f"duration out of range: {shown(text)}")
    return seconds


def format_duration(seconds: int) -> str:
    """Seconds -> the largest exact unit, as ``parse_duration`` reads it: 3600 -> ``1h``."""
    for unit, size in sorted(_UNITS.items(), key=lambda item: -item[1]):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def parse_time(text: str, now: float | None = None) -> int:
    """``now``, a duration ago (``15m``, ``1h30m``, ``2d ago``), unix seconds or ISO 8601
    (naive means UTC) -> unix seconds, from 0 to ``MAX_TIME``."""
    text = text.strip()
    unix = _UNIX.fullmatch(text)
    if unix:
        digits = unix.group(1).lstrip("0") or "0"
        seconds = int(digits) if len(digits) <= _MAX_DIGITS else MAX_TIME + 1
    elif text.lower() == "now":
        seconds = int(time.time() if now is None else now)
    elif _RELATIVE.match(text):
        ago = parse_duration(text.lower().removesuffix("ago").strip())
        seconds = int(time.time() if now is None else now) - ago
    else:
        seconds = _parse_iso(text)
    if not 0 <= seconds <= MAX_TIME:
        raise ValueError(f"time out of range: {shown(text)} (from 1970 to 9999)")
    return seconds


def _parse_iso(text: str) -> int:
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"not a time: {shown(text)} (use {TIME_EXAMPLES})") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return int(parsed.timestamp())


def iso(ts: int | None) -> str | None:
    """Unix seconds -> ISO 8601 UTC, for display."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
