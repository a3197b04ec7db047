"""Result rows held compactly while a host's detection state lives in memory.

A row as the store gives it is a dict of a dozen to twenty columns: about a kilobyte with
its strings, for each of the thousands of rows a host keeps current. Rows of one query
share their column names, and most values repeat across rows and hosts (process names,
paths, command lines, kinds, a pid named by each of its channel rows), so a row here is
a tuple of interned values beside one column index shared by every row of that shape.
It reads like the dict it replaces (``Mapping[str, str]``), so the readers do not change.

Column shapes come from what hosts send: at most ``MAX_SHAPES`` are shared, and a row of
any further shape keeps its own index (correct, only larger).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping

MAX_SHAPES = 1024
_shapes: dict[tuple[str, ...], dict[str, int]] = {}


def _shape(columns: tuple[str, ...]) -> dict[str, int]:
    found = _shapes.get(columns)
    if found is None:
        found = {sys.intern(c): i for i, c in enumerate(columns)}
        if len(_shapes) < MAX_SHAPES:
            _shapes[columns] = found
    return found


def _interned(value: object) -> object:
    return sys.intern(value) if type(value) is str else value


class CompactRow(Mapping[str, object]):
    """One row: a shared column index and a tuple of (interned) values."""

    __slots__ = ("_index", "_values")

    def __init__(self, index: dict[str, int], values: tuple[object, ...]) -> None:
        self._index = index
        self._values = values

    def __getitem__(self, key: str) -> object:
        return self._values[self._index[key]]

    def get(self, key: str, default: object = None) -> object:
        i = self._index.get(key)
        return default if i is None else self._values[i]

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __repr__(self) -> str:
        return f"CompactRow({dict(self)!r})"


def compact(row: Mapping[str, object]) -> CompactRow:
    """``row`` as a ``CompactRow`` (itself when it already is one)."""
    if isinstance(row, CompactRow):
        return row
    return CompactRow(_shape(tuple(row)), tuple(_interned(v) for v in row.values()))
