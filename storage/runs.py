"""What a log carries once read: runs of named queries and their rows, status lines, and
the rule that splits a logged query name into pack and query.

``fleetctl.ingest`` turns osquery's log lines into these; the store applies them. The
query-name split is made here once, at ingest, and stored with the query's state.
"""

from __future__ import annotations

import difflib
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


class UnknownQueryName(LookupError):
    """A query name that matches none of a host's queries; the message suggests some."""


def resolve_query_name(typed: str, known: Iterable[QueryName]) -> str:
    """The logged name of the query an admin means by ``typed``: the logged name itself
    (``pack_ipc-telemetry_process_lineage``), ``pack/query`` (``ipc-telemetry/
    process_lineage``) or the short query name (``process_lineage``) when one pack has
    it. Anything else raises ``UnknownQueryName`` naming the near ones."""
    names = list(known)
    if any(q.name == typed for q in names):
        return typed
    pack, slash, query = typed.partition("/")
    found = sorted(
        q.name
        for q in names
        if (slash and q.pack == pack and q.query == query) or (not slash and q.query == typed)
    )
    if len(found) == 1:
        return found[0]
    if found:
        raise UnknownQueryName(f"{typed!r} is in several packs: say which ({', '.join(found)})")
    spellings = {form for q in names for form in _spellings(q)}
    near = difflib.get_close_matches(typed, sorted(spellings), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(near)}?" if near else ""
    raise UnknownQueryName(f"no query {typed!r} on this host{hint}")


def _spellings(q: QueryName) -> tuple[str, ...]:
    return (q.name, q.query, f"{q.pack}/{q.query}") if q.pack else (q.name,)


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
