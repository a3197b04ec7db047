"""What a log carries once read: runs of named queries and their rows, status lines, and
the rule that splits a logged query name into pack and query.

``fleetctl.ingest`` turns osquery's log lines into these; the store applies them. The
query-name split is made here once, at ingest, and stored with the query's state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import orjson


@dataclass(frozen=True)
class QueryName:
    """A logged query name split into pack and query (``pack`` is None for the schedule)."""

    name: str
    pack: str | None
    query: str


def split_query_name(name: str, known_packs: Iterable[str] = ()) -> QueryName:
    """Split ``pack_<pack>_<query>`` or ``pack/<pack>/<query>``.

    The default delimiter ``_`` is ambiguous when pack names contain it; a known pack
    name that matches the prefix wins, else the first delimiter after ``pack`` splits.
    """
    for delim in ("/", "_"):
        prefix = "pack" + delim
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix) :]
        for pack in sorted(known_packs, key=len, reverse=True):
            if rest.startswith(pack + delim) and len(rest) > len(pack) + 1:
                return QueryName(name, pack, rest[len(pack) + 1 :])
        pack, sep, query = rest.partition(delim)
        if sep and pack and query:
            return QueryName(name, pack, query)
    return QueryName(name, None, name)


@dataclass
class Run:
    """One execution of one scheduled query as far as this batch carries it."""

    name: str
    epoch: int
    counter: int
    unix_time: int
    snapshot: bool
    host_identifiers: set[str]
    decorations: dict[str, str]
    added: list[dict[str, str]] = field(default_factory=list)
    removed: list[dict[str, str]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # positions in the batch's ``data``

    @property
    def key(self) -> tuple[str, int, int, int, bool]:
        return (self.name, self.epoch, self.counter, self.unix_time, self.snapshot)

    @property
    def looks_like_baseline(self) -> bool:
        """counter 0 with additions only. Some osquery versions keep the counter at 0
        for every diff (see the msticpy fixture); the store tells those apart."""
        return not self.snapshot and self.counter == 0 and not self.removed


def row_hash(row: Mapping[str, str]) -> str:
    """Stable identity of a row: BLAKE2b of its canonical (sorted, string) JSON.

    Computed on the row as sent, before the store escapes anything, so a row keeps its
    identity on either database."""
    return hashlib.blake2b(
        orjson.dumps(row, option=orjson.OPT_SORT_KEYS), digest_size=16
    ).hexdigest()


@dataclass(frozen=True)
class StatusLine:
    """One osqueryd status log line."""

    unix_time: int
    severity: int
    filename: str
    line: int
    message: str
    version: str
    host_identifier: str | None
    decorations: dict[str, str] | None
    index: int = 0


__all__ = ["QueryName", "Run", "StatusLine", "row_hash", "split_query_name"]
