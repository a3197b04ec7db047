"""What text the store can hold: the NUL escape and the limits every line must fit.

PostgreSQL's ``text`` and ``jsonb`` cannot hold U+0000, which a host may send in any
string. The store writes NUL there as ``␀0`` (U+2400 SYMBOL FOR NULL, then ``0``), and
writes the escape character itself as ``␀␀`` on *both* databases, so no text a host sends
can pass for an escape and one decoding, :func:`unescape`, reads either database without
knowing which it is. SQLite keeps NUL as sent. An analyst reading the store in SQL on
PostgreSQL sees ``␀0`` where a NUL was sent.

Limits are decided here, once, and checked at ingest on both databases alike (SQLite
would store longer text; PostgreSQL's ``varchar(n)`` would refuse it): a line that does
not fit is quarantined (``storage.rejected``) instead of failing its whole batch. Lengths
count characters as PostgreSQL stores them, escapes included (:func:`stored_length`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

ESCAPE = "\u2400"
NUL = "\0"
_ESCAPED = re.compile(f"{ESCAPE}([0{ESCAPE}])")

NAME_CHARS = 512  # a logged query name: String(512) in query_states, result_rows, data_loss
NAME_PART_CHARS = 255  # its pack and query parts: String(255) in query_states
KEY_CHARS = 255  # a column name or decoration key
STATUS_FILENAME_CHARS = 255  # status_logs.filename
STATUS_VERSION_CHARS = 64  # status_logs.version
BIGINT = (-(2**63), 2**63 - 1)  # epoch, counter and times
INTEGER = (-(2**31), 2**31 - 1)  # status severity and line


def stored_length(value: str) -> int:
    """Characters ``value`` takes in the store once escaped (the PostgreSQL count)."""
    if ESCAPE not in value and NUL not in value:
        return len(value)
    return len(value) + value.count(ESCAPE) + value.count(NUL)


def escape(value: str, nul: bool) -> str:
    """``value`` as the store writes it; ``nul``: escape NUL too (PostgreSQL)."""
    if ESCAPE in value:
        value = value.replace(ESCAPE, ESCAPE + ESCAPE)
    if nul and NUL in value:
        value = value.replace(NUL, ESCAPE + "0")
    return value


def unescape(value: str) -> str:
    """Text as the host sent it, from either database."""
    if ESCAPE not in value:
        return value
    return _ESCAPED.sub(lambda m: NUL if m.group(1) == "0" else ESCAPE, value)


def _needs_escape(row: Mapping[str, str], nul: bool) -> bool:
    text = "".join(row) + "".join(row.values())  # one scan at C speed: rows are small
    return ESCAPE in text or (nul and NUL in text)


def escape_row(row: Mapping[str, str], nul: bool) -> Mapping[str, str]:
    """A row (or decorations) with its names and values escaped; itself if none need it."""
    if not _needs_escape(row, nul):
        return row
    return {escape(k, nul): escape(v, nul) for k, v in row.items()}


def unescape_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored row (or decorations) as the host sent it."""
    return {unescape(k): unescape(v) if isinstance(v, str) else v for k, v in row.items()}


@dataclass(frozen=True)
class Encoder:
    """The escape of one database: ``nul`` is whether it must escape NUL."""

    nul: bool

    def text(self, value: str) -> str:
        return escape(value, self.nul)

    def row(self, row: Mapping[str, str]) -> Mapping[str, str]:
        return escape_row(row, self.nul)


def encoder_for(session: Session) -> Encoder:
    """The encoder for the database ``session`` writes to."""
    return Encoder(nul=session.get_bind().dialect.name == "postgresql")
