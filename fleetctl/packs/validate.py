"""Check osquery pack files before osqueryd sees them, reporting every problem at once.

osqueryd is forgiving in the wrong places: it skips a pack whose JSON is bad, keeps the
last of two queries with one name, ignores unknown keys (so ``blacklist``, removed in
osquery 5.0, silently stops working) and only fails a query when it runs on a host. This
module finds those problems up front. Each ``ValidationError`` names the file, pack,
query and offending identifier; SQL is compiled per platform against the schema
(``fleetctl.schema``) so unknown tables and columns, platform mismatches and
unconstrained required columns surface with "did you mean" hints.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fleetctl.packs.fields import PACK_KEYS, QUERY_KEYS, problem, shown
from fleetctl.packs.loader import decode, is_config, pack_documents, pack_files
from fleetctl.packs.model import (
    PLATFORM_WORDS,
    UnknownPlatformError,
    format_platforms,
    parse_platforms,
)
from fleetctl.schema import PLATFORMS, Compiled, Schema, default_schema

RESERVED_PREFIXES = ("query.", "cache.", "config_views.")  # osquery's own database keys
RESERVED_SUFFIXES = ("epoch", "counter")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SQLITE_NAME = re.compile(r"^(no such table|no such column|ambiguous column name): (\S+)$")
_SQLITE_NEAR = re.compile(r'^near "([^"]*)": syntax error$')


@dataclass(frozen=True)
class ValidationError:
    """One problem: where it is (file, pack, query), what it is and the name at fault."""

    file: str
    pack: str | None
    query: str | None
    message: str
    identifier: str | None = None

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Report:
    """What a run looked at and what it found."""

    files: int = 0
    packs: int = 0
    queries: int = 0
    errors: list[ValidationError] = field(default_factory=list)


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean X?)`` when a candidate is close to ``word``, else ``""``."""
    close = difflib.get_close_matches(word, sorted(set(candidates)), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


class _Checker:
    """Collects errors for one file; one method per level (file, pack, query, SQL)."""

    def __init__(self, file: str, schema: Schema, report: Report) -> None:
        self.file = file
        self.schema = schema
        self.report = report

    def error(
        self, pack: str | None, query: str | None, message: str, identifier: str | None = None
    ) -> None:
        self.report.errors.append(ValidationError(self.file, pack, query, message, identifier))

    def document(self, text: str, default_name: str) -> None:
        try:
            doc = decode(text)
        except json.JSONDecodeError as exc:
            self.error(
                None, None, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            )
            return
        if not isinstance(doc, dict):
            self.error(None, None, f"a pack must be a JSON object, not {shown(doc)}")
            return
        if is_config(doc) and isinstance(doc.get("packs"), dict):
            for name in getattr(doc["packs"], "duplicates", ()):
                self.error(name, None, f"duplicate pack name '{name}'", name)
        for name, pack in pack_documents(doc, default_name):
            if isinstance(pack, str):
                self.error(
                    name, None, f"pack '{name}' refers to {pack!r}; validate that file", name
                )
            elif not isinstance(pack, dict):
                self.error(name, None, f"pack '{name}' must be an object, not {shown(pack)}", name)
            else:
                self.pack(name, pack)

    def _keys(
        self, pack: str, query: str | None, doc: dict[str, Any], types: dict[str, type]
    ) -> None:
        """Report duplicate, unknown and removed keys and values of the wrong type."""
        for key in getattr(doc, "duplicates", ()):
            self.error(pack, query, f"duplicate key '{key}'", key)
        for key, value in doc.items():
            if key == "blacklist":
                self.error(
                    pack, query, "'blacklist' was removed in osquery 5.0; use 'denylist'", key
                )
            elif key not in types:
                hint = did_you_mean(key, types)
                self.error(pack, query, f"unknown key '{key}'{hint}", key)
            elif (wrong := problem(key, value, types[key])) is not None:
                self.error(pack, query, wrong, key)

    def _platforms(self, pack: str, query: str | None, spec: Any) -> frozenset[str] | None:
        if not isinstance(spec, str):
            return None
        try:
            return parse_platforms(spec)
        except UnknownPlatformError as exc:
            hint = did_you_mean(exc.word, PLATFORM_WORDS)
            self.error(pack, query, f"unknown platform '{exc.word}'{hint}", exc.word)
            return None

    def pack(self, name: str, doc: dict[str, Any]) -> None:
        self.report.packs += 1
        self._keys(name, None, doc, PACK_KEYS)
        platforms = self._platforms(name, None, doc.get("platform"))
        queries = doc.get("queries")
        if "queries" not in doc:
            self.error(name, None, "pack has no 'queries' object", "queries")
        discovery = doc.get("discovery")
        if isinstance(discovery, list):
            for i, sql in enumerate(discovery):
                if isinstance(sql, str):
                    self.sql(name, f"discovery[{i}]", sql, platforms, extension_ok=True)
        if not isinstance(queries, dict):
            return
        for qname in getattr(queries, "duplicates", ()):
            self.error(name, qname, f"duplicate query name '{qname}'", qname)
        has_discovery = isinstance(discovery, list) and bool(discovery)
        table_platforms = [
            self.query(name, qname, qdoc, platforms, has_discovery)
            for qname, qdoc in queries.items()
        ]
        used = [p for p in table_platforms if p]
        if platforms is not None and used and all(not (p & platforms) for p in used):
            spec = doc["platform"]
            union = format_platforms(frozenset().union(*used))
            self.error(
                name,
                None,
                f"pack platform '{spec}' shares no platform with its queries' tables ({union})",
                spec,
            )

    def query(
        self,
        pack: str,
        name: str,
        doc: Any,
        pack_platforms: frozenset[str] | None,
        has_discovery: bool,
    ) -> frozenset[str] | None:
        """Check one query; returns the platforms its tables exist on (for the pack rule)."""
        self.report.queries += 1
        for prefix in RESERVED_PREFIXES:
            if name.startswith(prefix):
                self.error(pack, name, f"query name '{name}' must not start with '{prefix}'", name)
        for suffix in RESERVED_SUFFIXES:
            if name.endswith(suffix):
                self.error(pack, name, f"query name '{name}' must not end with '{suffix}'", name)
        if not isinstance(doc, dict):
            self.error(pack, name, f"query must be an object, not {shown(doc)}", name)
            return None
        self._keys(pack, name, doc, QUERY_KEYS)
        if "query" not in doc:
            self.error(pack, name, "query has no 'query' SQL", "query")
        if not isinstance(doc.get("query"), str):
            return None
        own = self._platforms(pack, name, doc.get("platform"))
        explicit = own if pack_platforms is None else pack_platforms
        if own is not None and pack_platforms is not None:
            explicit = own & pack_platforms
            if not explicit:
                self.error(
                    pack,
                    name,
                    f"query platform '{doc['platform']}' shares no platform with the pack's "
                    f"({format_platforms(pack_platforms)})",
                    doc["platform"],
                )
        return self.sql(pack, name, doc["query"], explicit, extension_ok=has_discovery)

    def sql(
        self,
        pack: str,
        query: str,
        sql: str,
        explicit: frozenset[str] | None,
        extension_ok: bool,
    ) -> frozenset[str] | None:
        """Compile ``sql`` on every platform it can run on; returns its tables' platforms."""
        if not sql.strip():
            self.error(pack, query, "query is empty", None)
            return None
        anywhere = self.schema.compile(sql)
        if anywhere.error is not None:
            self._sqlite_error(pack, query, sql, anywhere.error)
            return None
        if anywhere.statements > 1:
            self.error(pack, query, f"query must be one SQL statement, found {anywhere.statements}")
            return None
        tables = [self.schema.tables[t] for t in sorted(anywhere.tables)]
        shared = frozenset(PLATFORMS)
        for table in tables:
            shared &= table.platforms
        for table in tables:
            if table.extension and not extension_ok:
                self.error(
                    pack,
                    query,
                    f"table {table.name} is served by the fleetctl extension; the pack needs a "
                    "'discovery' query that checks the extension is loaded",
                    table.name,
                )
        if explicit is None and tables and not shared:
            listed = ", ".join(f"{t.name} ({format_platforms(t.platforms)})" for t in tables)
            self.error(pack, query, f"tables share no platform: {listed}", tables[0].name)
            return frozenset()
        # An empty explicit set was already reported as a platform conflict.
        in_play = explicit if explicit is not None else shared
        self._per_platform(pack, query, sql, sorted(in_play), anywhere)
        return shared if tables else None

    def _per_platform(
        self, pack: str, query: str, sql: str, platforms: Sequence[str], anywhere: Compiled
    ) -> None:
        failures: dict[str, list[str]] = {}
        unconstrained: dict[str, None] = {}
        for platform in platforms:
            compiled = self.schema.compile(sql, platform)
            if compiled.error is not None:
                failures.setdefault(compiled.error, []).append(platform)
                continue
            for scan in compiled.scans:
                if not scan.required_satisfied:
                    unconstrained.setdefault(scan.table, None)
        for message, where in failures.items():
            self._platform_error(pack, query, sql, message, where)
        for name in unconstrained:
            required = [c.name for c in self.schema.tables[name].columns if c.required]
            self.error(
                pack,
                query,
                f"table {name} needs a constraint on {' or '.join(required)} in WHERE or "
                "JOIN ... ON (osqueryd refuses to scan it otherwise)",
                name,
            )

    def _mentioned(self, sql: str) -> list[str]:
        words = {w.lower() for w in _IDENTIFIER.findall(sql)}
        return sorted(t.name for w in words if (t := self.schema.table(w)) is not None)

    def _sqlite_error(self, pack: str, query: str, sql: str, message: str) -> None:
        match = _SQLITE_NAME.match(message)
        if match is None:
            near = _SQLITE_NEAR.match(message)
            self.error(pack, query, f"SQL error: {message}", near.group(1) if near else None)
            return
        kind, name = match.group(1), match.group(2).split(".")[-1]
        if kind == "no such table":
            names = list(self.schema.tables) + [
                a for t in self.schema.tables.values() for a in t.aliases
            ]
            hint = did_you_mean(name, names)
        elif kind == "no such column":
            mentioned = self._mentioned(sql) or list(self.schema.tables)
            hidden = [
                t for t in mentioned if (c := self.schema.tables[t].column(name)) and c.hidden
            ]
            columns = [c.name for t in mentioned for c in self.schema.tables[t].columns]
            hint = (
                f" ({hidden[0]}.{name} is hidden: SELECT * leaves it out, name it explicitly)"
                if hidden
                else did_you_mean(name, columns)
            )
        else:
            hint = ""
        self.error(pack, query, f"{kind}: {name}{hint}", name)

    def _platform_error(
        self, pack: str, query: str, sql: str, message: str, platforms: list[str]
    ) -> None:
        """An error on some platforms only: say where the table or column does exist."""
        where = format_platforms(platforms)
        match = _SQLITE_NAME.match(message)
        kind, name = (match.group(1), match.group(2).split(".")[-1]) if match else ("", "")
        if kind == "no such table" and (table := self.schema.table(name)) is not None:
            self.error(
                pack,
                query,
                f"table {name} does not exist on {where} "
                f"(only on {format_platforms(table.platforms)})",
                name,
            )
            return
        if kind == "no such column":
            for tname in self._mentioned(sql):
                column = self.schema.tables[tname].column(name)
                if column is not None and column.platforms is not None:
                    self.error(
                        pack,
                        query,
                        f"column {tname}.{name} does not exist on {where} "
                        f"(only on {format_platforms(column.platforms)})",
                        name,
                    )
                    return
        self.error(pack, query, f"SQL error on {where}: {message}", name or None)


def validate_text(
    text: str, file: str, name: str | None = None, schema: Schema | None = None
) -> list[ValidationError]:
    """Errors in pack or config text; ``name`` names a single pack (default: file stem)."""
    report = Report()
    _Checker(file, schema or default_schema(), report).document(text, name or Path(file).stem)
    return report.errors


def validate_paths(paths: Iterable[Path], schema: Schema | None = None) -> Report:
    """Validate every pack file under ``paths`` (directories mean their pack files)."""
    report = Report()
    for path in pack_files(paths):
        report.files += 1
        checker = _Checker(str(path), schema or default_schema(), report)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            checker.error(None, None, f"cannot read file: {exc}")
            continue
        checker.document(text, path.stem)
    return report


def validate_file(path: Path, schema: Schema | None = None) -> list[ValidationError]:
    """Errors in one pack file."""
    return validate_paths([path], schema).errors
