"""Quarantined log lines: what a host sent that the store could not hold as sent.

A line is quarantined, with its reason, when ingest finds it malformed or outside the
store's limits (``fleetctl.ingest``, ``storage.encoding``), or when the database itself
refuses the run it belongs to with a data error. Its batch is still acknowledged and the
rest stored: osqueryd keeps resending a batch until a post succeeds, so refusing the
batch would block the host's stream for good. The line is kept as JSON text with every
non-ASCII character escaped (:func:`verbatim`), which both databases hold whatever the
host sent: NUL, lone surrogates, integers beyond 64 bits, any depth.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import insert, select
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from storage.encoding import NAME_CHARS, Encoder, encoder_for
from storage.models import Host, RejectedLine

REASON_CHARS = 2000
# SQLSTATE classes of a database refusing the data, not failing as a service:
# 22 data exception, 54 program limit exceeded.
_DATA_CLASSES = ("22", "54")
# SQLite's: a string or blob over its length limit, a value of the wrong type.
_SQLITE_DATA_CODES = (sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_MISMATCH)


@dataclass(frozen=True)
class Rejection:
    """One line of a batch that is not stored: its position in ``data`` and why."""

    index: int
    reason: str
    name: str = ""  # the query name, when the line has a readable one


@dataclass
class _Token:
    """Punctuation already in JSON form, kept apart from string values on the stack."""

    text: str


def verbatim(value: Any, *, sort_keys: bool = False) -> str:
    """``value`` as ASCII JSON text at any depth.

    The standard library's encoder recurses and stops near 1,000 levels and orjson at 254,
    so containers are walked with an explicit stack; scalars are the standard library's.
    """
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Token):
            out.append(item.text)
        elif isinstance(item, dict):
            pairs = sorted(item.items()) if sort_keys else list(item.items())
            parts: list[Any] = [_Token("{")]
            for i, (key, val) in enumerate(pairs):
                parts += [_Token(("," if i else "") + json.dumps(str(key)) + ":"), val]
            stack.extend(reversed([*parts, _Token("}")]))
        elif isinstance(item, list | tuple):
            parts = [_Token("[")]
            for i, val in enumerate(item):
                parts += [_Token(",")] if i else []
                parts.append(val)
            stack.extend(reversed([*parts, _Token("]")]))
        else:
            out.append(json.dumps(item))
    return "".join(out)


def _storable(text: str, enc: Encoder, limit: int) -> str:
    """Free text (a name, a reason) as the store can hold it: lone surrogates written as
    ``\\udcxx``, NUL escaped, cut to ``limit`` stored characters."""
    return enc.text(text.encode("utf-8", "backslashreplace").decode("utf-8"))[:limit]


def record(
    session: Session,
    host_id: int,
    log_type: str,
    lines: Sequence[Any],
    rejections: Sequence[Rejection],
    now: int,
) -> None:
    """Keep each rejected line of ``lines`` with its reason."""
    if not rejections:
        return
    enc = encoder_for(session)
    session.execute(
        insert(RejectedLine),
        [
            {
                "host_id": host_id,
                "log_type": log_type,
                "name": _storable(r.name, enc, NAME_CHARS),
                "reason": _storable(r.reason, enc, REASON_CHARS),
                "line": verbatim(lines[r.index]),
                "received_at": now,
            }
            for r in rejections
        ],
    )


def is_data_error(exc: BaseException) -> bool:
    """Whether the database refused the data itself, so quarantining it lets the rest in.

    Anything else (database down, deadlock, lock or statement timeout) is not the line's
    fault: the request must fail so osqueryd resends it later.
    """
    cause = exc.orig if isinstance(exc, StatementError) else exc
    if isinstance(cause, OverflowError | UnicodeEncodeError):
        return True  # sqlite3 cannot bind the Python value (beyond 64 bits, surrogates)
    if isinstance(cause, psycopg.Error):
        state = cause.sqlstate
        # No SQLSTATE: psycopg refused the value before sending it (a NUL in text).
        return state[:2] in _DATA_CLASSES if state else isinstance(cause, psycopg.DataError)
    if isinstance(cause, sqlite3.Error):
        return getattr(cause, "sqlite_errorcode", None) in _SQLITE_DATA_CODES
    return False


def refusal(exc: BaseException) -> str:
    """A data error as a quarantine reason: the database's own first line."""
    cause = exc.orig if isinstance(exc, StatementError) else exc
    message = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return f"the database refused it: {message or type(cause).__name__}"


def rejected_lines(session: Session, host_id: int | None = None) -> list[tuple[RejectedLine, str]]:
    """Quarantined lines (of one host, or all), oldest first, with their host's identifier."""
    stmt = select(RejectedLine, Host.host_identifier).join(Host, Host.id == RejectedLine.host_id)
    if host_id is not None:
        stmt = stmt.where(RejectedLine.host_id == host_id)
    return [(row, ident) for row, ident in session.execute(stmt.order_by(RejectedLine.id))]
