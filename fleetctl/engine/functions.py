"""The SQL functions and collation osquery adds to SQLite, so pack SQL runs unchanged.

From ``osquery/sql/sqlite_string.cpp``, ``sqlite_encoding.cpp``, ``sqlite_hashing.cpp``
and ``sqlite_collation.cpp``: ``split``, ``regex_split``, ``regex_match``, ``to_base64``,
``from_base64``, ``conditional_to_base64``, ``md5``, ``sha1``, ``sha256`` and the
``version`` collation used by ``osquery_info.version`` and friends. Functions osquery
has that are missing here fail with SQLite's usual ``no such function: x``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from functools import lru_cache
from typing import Any

import apsw


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def split(value: Any, tokens: Any, index: Any) -> str | None:
    """The index-th piece of ``value`` split on any character of ``tokens``, empty pieces
    dropped (boost::split + is_any_of, as osquery does)."""
    text, seps = _text(value), _text(tokens)
    if text is None or seps is None or not isinstance(index, int) or index < 0:
        return None
    pieces = [p for p in re.split("[" + re.escape(seps) + "]", text) if p] if seps else [text]
    return pieces[index] if index < len(pieces) else None


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def regex_split(value: Any, pattern: Any, index: Any) -> str | None:
    text, pat = _text(value), _text(pattern)
    if text is None or pat is None or not isinstance(index, int) or index < 0:
        return None
    try:
        pieces = [p for p in _regex(pat).split(text) if p]
    except re.error:
        return None
    return pieces[index] if index < len(pieces) else None


def regex_match(value: Any, pattern: Any, index: Any) -> str | None:
    """Group ``index`` of the first match of ``pattern`` in ``value`` (0 = whole match)."""
    text, pat = _text(value), _text(pattern)
    if text is None or pat is None or not isinstance(index, int) or index < 0:
        return None
    try:
        match = _regex(pat).search(text)
    except re.error:
        return None
    if match is None or index > (match.re.groups or 0):
        return None
    return match.group(index)


def _bytes(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    return str(value).encode()


def to_base64(value: Any) -> str | None:
    data = _bytes(value)
    return None if data is None else base64.b64encode(data).decode()


def from_base64(value: Any) -> str | None:
    data = _bytes(value)
    if data is None:
        return None
    try:
        return base64.b64decode(data, validate=False).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return None


def conditional_to_base64(value: Any) -> str | None:
    """Base64 only when the value is not printable ASCII, as osquery does."""
    data = _bytes(value)
    if data is None:
        return None
    if all(32 <= b < 127 for b in data):
        return data.decode()
    return base64.b64encode(data).decode()


def _hasher(name: str) -> Any:
    def digest(value: Any) -> str | None:
        data = _bytes(value)
        return None if data is None else hashlib.new(name, data).hexdigest()

    digest.__name__ = name
    return digest


def _version_key(text: str) -> list[tuple[int, int | str]]:
    key: list[tuple[int, int | str]] = []
    for part in re.split(r"[.\-+_ ]", text):
        key.append((0, int(part)) if part.isdigit() else (1, part))
    return key


def version_collation(left: str, right: str) -> int:
    """Compare dotted versions numerically, piece by piece ("5.10.0" > "5.9.2")."""
    a, b = _version_key(left), _version_key(right)
    return (a > b) - (a < b)


def register(connection: apsw.Connection) -> None:
    table: tuple[tuple[str, Any, int], ...] = (
        ("split", split, 3),
        ("regex_split", regex_split, 3),
        ("regex_match", regex_match, 3),
        ("to_base64", to_base64, 1),
        ("from_base64", from_base64, 1),
        ("conditional_to_base64", conditional_to_base64, 1),
        ("md5", _hasher("md5"), 1),
        ("sha1", _hasher("sha1"), 1),
        ("sha256", _hasher("sha256"), 1),
    )
    for name, function, nargs in table:
        connection.create_scalar_function(name, function, nargs, deterministic=True)
    connection.create_collation("version", version_collation)
