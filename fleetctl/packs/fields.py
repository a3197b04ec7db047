"""The keys osquery reads from a pack and from a query, and what each one may hold.

One set of checks for every reader of a pack: the loader refuses a value that cannot
become a ``Pack`` (``type_problem``), the converter refuses an interval it cannot carry
over, and the validator reports those and the values osqueryd would refuse
(``problem``), each problem in the same words. Messages name the key and the value;
``located`` puts the pack and query in front for an exception's one-line message.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fleetctl.packs.model import MAX_INTERVAL

# Keys osquery reads from a pack and from a query, with the JSON type each one takes.
PACK_KEYS: dict[str, type] = {
    "queries": dict, "discovery": list, "platform": str, "version": str, "shard": int,
    "oncall": str,
}  # fmt: skip
QUERY_KEYS: dict[str, type] = {
    "query": str, "interval": int, "snapshot": bool, "removed": bool, "platform": str,
    "version": str, "shard": int, "denylist": bool, "description": str, "value": str,
}  # fmt: skip

_NUMERIC = re.compile(r"\s*[+-]?\d+\s*")
_VERSION = re.compile(r"\d+(\.\d+)*")


def shown(value: Any) -> str:
    """A value as JSON, cut short for a message."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def interval_seconds(value: Any) -> int | None:
    """``interval`` as osquery reads it: an int or a numeric string; ``None`` if neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _NUMERIC.fullmatch(value):
        return int(value)
    return None


def type_problem(key: str, value: Any, expected: type) -> str | None:
    """Why ``value`` cannot be read as ``key`` at all, or None when it can."""
    if key == "interval":
        if interval_seconds(value) is None:
            return f"'interval' must be an integer or a numeric string, not {shown(value)}"
        return None
    if expected is bool and not isinstance(value, bool):
        return f"'{key}' must be true or false, not {shown(value)}"
    if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
        return f"'{key}' must be an integer, not {shown(value)}"
    if expected is str and not isinstance(value, str):
        return f"'{key}' must be a string, not {shown(value)}"
    if expected is dict and not isinstance(value, dict):
        return f"'{key}' must be an object, not {shown(value)}"
    if expected is list and not (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    ):
        return f"'{key}' must be a list of SQL strings, not {shown(value)}"
    return None


def problem(key: str, value: Any, expected: type) -> str | None:
    """Why osqueryd would refuse ``value`` for ``key``, or None when it is fine."""
    wrong_type = type_problem(key, value, expected)
    if wrong_type is not None:
        return wrong_type
    if key == "interval":
        seconds = interval_seconds(value)
        if seconds is not None and not 1 <= seconds <= MAX_INTERVAL:
            return f"'interval' must be between 1 and {MAX_INTERVAL}, not {shown(value)}"
        return None
    if expected is int and not 1 <= value <= 100:
        return f"'{key}' must be between 1 and 100, not {value}"
    if key == "version" and not _VERSION.fullmatch(value):
        return f"'version' must be an osquery version such as \"5.0.1\", not {shown(value)}"
    return None


def located(pack: str | None, query: str | None, message: str) -> str:
    """``message`` after the pack and query it is about: ``pack 'p', query 'q': ...``."""
    where = [f"pack {pack!r}"] if pack is not None else []
    where += [f"query {query!r}"] if query is not None else []
    return f"{', '.join(where)}: {message}" if where else message
