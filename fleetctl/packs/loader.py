"""Read osquery pack files into ``Pack`` objects, accepting what osqueryd itself accepts.

osqueryd strips whole lines that start with ``#`` or ``//`` before parsing a config or a
pack (``stripConfigComments`` in ``osquery/config/config.cpp``), and reads ``interval``
from a number or a numeric string; the ``packs/*.conf`` files osquery ships rely on both.
Comment lines are blanked rather than removed so JSON errors keep their line numbers.

Duplicate JSON keys are remembered on the decoded objects (``JSONObject.duplicates``):
``json`` keeps the last one silently, and a duplicated query name is a pack bug that
``fleetctl.packs.validate`` reports.

Loading assumes a pack that validates; ``PackFormatError`` is raised for content that
cannot be turned into a ``Pack`` at all. Run the validator first for full diagnostics.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from fleetctl.packs.fields import (
    PACK_KEYS,
    QUERY_KEYS,
    interval_seconds,
    located,
    shown,
    type_problem,
)
from fleetctl.packs.model import DEFAULT_INTERVAL, Pack, ScheduledQuery

PACK_SUFFIXES = (".json", ".conf")
_COMMENT_LINE = re.compile(r"^\s*(#|//)")


class PackFormatError(ValueError):
    """Content that cannot be read as an osquery pack (run the validator for details)."""


class JSONObject(dict[str, Any]):
    """A decoded JSON object that also remembers keys which appeared more than once."""

    duplicates: tuple[str, ...] = ()


def _object_hook(pairs: list[tuple[str, Any]]) -> JSONObject:
    obj = JSONObject()
    seen: list[str] = []
    for key, value in pairs:
        if key in obj and key not in seen:
            seen.append(key)
        obj[key] = value
    obj.duplicates = tuple(seen)
    return obj


def strip_comments(text: str) -> str:
    """Blank out ``#`` and ``//`` comment lines as osqueryd does (line numbers survive)."""
    return "\n".join("" if _COMMENT_LINE.match(line) else line for line in text.split("\n"))


def decode(text: str) -> Any:
    """Parse pack or config JSON with osquery's comment rules; objects are ``JSONObject``.

    Raises ``json.JSONDecodeError`` (with ``lineno``/``colno``) on malformed input.
    """
    return json.loads(strip_comments(text), object_pairs_hook=_object_hook)


def is_config(doc: Any) -> bool:
    """A full osquery config (``packs``/``schedule`` at the top) rather than one pack."""
    return isinstance(doc, dict) and "queries" not in doc and ("packs" in doc or "schedule" in doc)


def pack_documents(doc: Any, default_name: str) -> list[tuple[str, Any]]:
    """Split a decoded file into ``(pack name, pack object)`` pairs.

    A pack file is one pack named after the file. In a config, every ``packs`` entry is a
    pack and the top-level ``schedule`` becomes pack ``main``, the name osquery gives it
    internally. Values are returned as found (a pack may be a string path in a config).
    """
    if not is_config(doc):
        return [(default_name, doc)]
    found: list[tuple[str, Any]] = []
    packs = doc.get("packs")
    if isinstance(packs, dict):
        found.extend(packs.items())
    if "schedule" in doc:
        schedule = JSONObject(queries=doc["schedule"])
        found.append(("main", schedule))
    return found


def _checked(value: Any, key: str, pack: str, query: str | None) -> Any:
    """``value`` for ``key``, refused when it has the wrong type for it."""
    wrong = type_problem(key, value, (PACK_KEYS if query is None else QUERY_KEYS)[key])
    if wrong is not None:
        raise PackFormatError(located(pack, query, wrong))
    return value


def _optional(doc: dict[str, Any], key: str, pack: str, query: str | None = None) -> Any:
    """``doc[key]``, None when absent or null; a value of the wrong type is refused."""
    value = doc.get(key)
    return None if value is None else _checked(value, key, pack, query)


def query_from_document(pack: str, name: str, doc: Any) -> ScheduledQuery:
    """One ``queries`` entry as a ``ScheduledQuery`` (osquery defaults for absent keys)."""
    if not isinstance(doc, dict):
        raise PackFormatError(located(pack, name, f"query must be an object, not {shown(doc)}"))
    if "query" not in doc:
        raise PackFormatError(located(pack, name, "query has no 'query' SQL"))
    interval = _checked(doc.get("interval", DEFAULT_INTERVAL), "interval", pack, name)
    seconds = interval_seconds(interval)
    flags = {key: _optional(doc, key, pack, name) for key in ("snapshot", "removed", "denylist")}
    return ScheduledQuery(
        name=name,
        query=_checked(doc["query"], "query", pack, name),
        interval=DEFAULT_INTERVAL if seconds is None else seconds,
        snapshot=bool(flags["snapshot"]),
        removed=flags["removed"] is not False,
        platform=_optional(doc, "platform", pack, name),
        version=_optional(doc, "version", pack, name),
        shard=_optional(doc, "shard", pack, name),
        denylist=flags["denylist"] is not False,
        description=_optional(doc, "description", pack, name),
        value=_optional(doc, "value", pack, name),
    )


def pack_from_document(name: str, doc: Any, source: str | None = None) -> Pack:
    """A decoded pack object as a ``Pack``."""
    if not isinstance(doc, dict):
        raise PackFormatError(f"pack '{name}' must be an object, not {shown(doc)}")
    queries = _checked(doc.get("queries", {}), "queries", name, None)
    discovery = _checked(doc.get("discovery", []), "discovery", name, None)
    return Pack(
        name=name,
        queries=tuple(query_from_document(name, qname, q) for qname, q in queries.items()),
        discovery=tuple(discovery),
        platform=_optional(doc, "platform", name),
        version=_optional(doc, "version", name),
        shard=_optional(doc, "shard", name),
        source=source,
        oncall=_optional(doc, "oncall", name),
    )


def loads(text: str, name: str, source: str | None = None) -> list[Pack]:
    """Packs from the text of a pack file (one pack) or a config (its ``packs``)."""
    try:
        doc = decode(text)
    except json.JSONDecodeError as exc:
        raise PackFormatError(f"invalid JSON at line {exc.lineno} column {exc.colno}") from exc
    packs = []
    for pack_name, pack_doc in pack_documents(doc, name):
        if isinstance(pack_doc, str):
            raise PackFormatError(f"pack {pack_name!r} refers to {pack_doc!r}; load that file")
        packs.append(pack_from_document(pack_name, pack_doc, source))
    return packs


def load_file(path: Path) -> list[Pack]:
    """Packs in one file; a pack file's pack is named after the file (``ipc.json`` → ``ipc``)."""
    return loads(path.read_text(encoding="utf-8"), path.stem, str(path))


def dumps(packs: Sequence[Pack]) -> str:
    """Serialise packs: one pack as a pack file, several as a config's ``packs`` object."""
    if len(packs) == 1:
        doc: dict[str, Any] = packs[0].to_osquery()
    else:
        doc = {"packs": {pack.name: pack.to_osquery() for pack in packs}}
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def shipped_packs_dir() -> Path:
    """The packs this project ships: ``packs/`` in a checkout, ``_shipped_packs`` in a wheel."""
    package_dir = Path(__file__).resolve().parent.parent
    installed = package_dir / "_shipped_packs"
    return installed if installed.is_dir() else package_dir.parent / "packs"


def pack_files(paths: Iterable[Path]) -> list[Path]:
    """Files named by ``paths``; a directory stands for its ``*.json`` and ``*.conf`` files."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.suffix in PACK_SUFFIXES))
        else:
            found.append(path)
    return found
