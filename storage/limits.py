"""What a field of the store can hold: the integer range and the declared string length
of a column, named ``"Model.attribute"`` (``"Campaign.targets"``), so that callers bound
their input to the schema without reaching into ``storage.models``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Integer, SmallInteger

from storage import models

Bounds = tuple[int, int]

INT64: Bounds = (-(2**63), 2**63 - 1)
INT32: Bounds = (-(2**31), 2**31 - 1)
INT16: Bounds = (-(2**15), 2**15 - 1)


def _column(field: Any) -> Any:
    """A mapped attribute, from itself or its ``"Model.attribute"`` name."""
    if not isinstance(field, str):
        return field
    model, _, attribute = field.partition(".")
    return getattr(getattr(models, model), attribute)


def column_range(field: Any, low: int | None = None) -> Bounds:
    """The integers the column can hold, optionally from ``low``."""
    column = _column(field)
    kind = column.type
    bounds = (
        INT64
        if isinstance(kind, BigInteger)
        else INT16
        if isinstance(kind, SmallInteger)
        else INT32
        if isinstance(kind, Integer)
        else None
    )
    if bounds is None:
        raise TypeError(f"{column} is not an integer column")
    return (bounds[0] if low is None else low), bounds[1]


def column_length(field: Any) -> int:
    """The declared length of a string column."""
    column = _column(field)
    length = getattr(column.type, "length", None)
    if length is None:
        raise TypeError(f"{column} has no declared length")
    return int(length)


__all__ = ["INT16", "INT32", "INT64", "Bounds", "column_length", "column_range"]
