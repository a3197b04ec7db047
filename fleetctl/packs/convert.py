"""Turn packs written for osqueryd or FleetDM into this project's pack files.

Two inputs are understood:

* osquery JSON: a pack (``{"platform": ..., "queries": {...}}`` as in osquery's
  ``packs/*.conf``) or a whole config (``{"packs": {...}, "schedule": {...}}``), with
  osquery's ``#``/``//`` comment lines. Packs given as file paths are read relative to
  the config.
* FleetDM YAML (``fleetctl get`` output): ``kind: pack`` documents whose entries name
  ``kind: query`` documents, plus scheduled ``kind: query`` documents on their own.
  Fleet's ``logging`` maps onto osquery's flags: ``snapshot`` is ``snapshot: true``,
  ``differential`` is ``removed: true``, ``differential_ignore_removals`` is
  ``removed: false``.

Anything that has no osquery equivalent (Fleet targets, other kinds, a second query of
the same name) is reported as a warning instead of being dropped in silence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fleetctl.packs.fields import interval_seconds, located, type_problem
from fleetctl.packs.loader import decode, pack_documents, pack_from_document
from fleetctl.packs.model import DEFAULT_INTERVAL, Pack, ScheduledQuery

YAML_SUFFIXES = (".yml", ".yaml")
LOGGING = {
    "snapshot": {"snapshot": True},
    "differential": {"snapshot": False, "removed": True},
    "differential_ignore_removals": {"snapshot": False, "removed": False},
}
_ENTRY_KEYS = {
    "query", "name", "description", "interval", "snapshot", "removed", "platform", "version",
    "shard", "denylist", "logging",
}  # fmt: skip


class ConvertError(ValueError):
    """The input cannot be read as osquery JSON or FleetDM YAML."""


@dataclass(frozen=True)
class Conversion:
    """Packs read from the input, and what could not be carried over."""

    packs: tuple[Pack, ...]
    warnings: tuple[str, ...] = field(default_factory=tuple)


def convert_file(path: Path) -> Conversion:
    """Read ``path`` (osquery JSON, or FleetDM YAML for ``.yml``/``.yaml``)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in YAML_SUFFIXES:
        return from_fleet_yaml(text, path.stem, source=str(path))
    return from_osquery(text, path.stem, base_dir=path.parent, source=str(path))


def _decode(text: str, where: str) -> Any:
    try:
        return decode(text)
    except json.JSONDecodeError as exc:
        raise ConvertError(
            f"{where}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc


def from_osquery(
    text: str, name: str, base_dir: Path = Path("."), source: str | None = None
) -> Conversion:
    """Packs from osquery pack or config JSON; ``name`` names a lone pack."""
    doc = _decode(text, source or name)
    packs: list[Pack] = []
    warnings: list[str] = []
    if isinstance(doc, dict) and "schedule" in doc and "queries" not in doc:
        warnings.append(
            "the top-level schedule became pack 'main'; its results are now named "
            "pack_main_<query> instead of <query>"
        )
    for pack_name, pack_doc in pack_documents(doc, name):
        pack_source = source
        if isinstance(pack_doc, str):
            if "*" in pack_doc:
                raise ConvertError(f"pack {pack_name!r}: glob {pack_doc!r} is not supported")
            ref = Path(pack_doc) if Path(pack_doc).is_absolute() else base_dir / pack_doc
            if not ref.is_file():
                raise ConvertError(f"pack {pack_name!r} refers to {pack_doc!r}, which is missing")
            pack_source = str(ref)
            pack_doc = _decode(ref.read_text(encoding="utf-8"), pack_source)
        queries = pack_doc.get("queries") if isinstance(pack_doc, dict) else None
        for duplicate in getattr(queries, "duplicates", ()):
            warnings.append(
                f"pack {pack_name!r} defines query {duplicate!r} more than once; "
                "the last definition is kept, as osqueryd does"
            )
        packs.append(pack_from_document(pack_name, pack_doc, pack_source))
    return Conversion(tuple(packs), tuple(warnings))


def _flags(*sources: dict[str, Any]) -> dict[str, Any]:
    """snapshot/removed from Fleet ``logging`` values, explicit keys winning over logging."""
    flags: dict[str, Any] = {}
    for src in sources:
        logging = src.get("logging")
        if logging:
            if logging not in LOGGING:
                raise ConvertError(f"unknown logging {logging!r} (expected {', '.join(LOGGING)})")
            flags.update(LOGGING[logging])
    for src in sources:
        flags.update({k: src[k] for k in ("snapshot", "removed") if src.get(k) is not None})
    return flags


def _first(key: str, *sources: dict[str, Any]) -> Any:
    """The first non-empty value of ``key``; Fleet writes "" for "not set"."""
    for src in sources:
        if src.get(key) not in (None, ""):
            return src[key]
    return None


def _scheduled(
    pack: str, name: str, entry: dict[str, Any], query: dict[str, Any]
) -> ScheduledQuery:
    interval = _first("interval", entry, query)
    if interval is not None and (wrong := type_problem("interval", interval, int)) is not None:
        raise ConvertError(located(pack, name, wrong))
    seconds = interval_seconds(interval)
    flags = _flags(query, entry)
    return ScheduledQuery(
        name=name,
        query=str(query.get("query", "")).strip(),
        interval=DEFAULT_INTERVAL if seconds is None else seconds,
        snapshot=bool(flags.get("snapshot", False)),
        removed=flags.get("removed", True) is not False,
        platform=_first("platform", entry, query),
        version=_first("version", entry) or _first("min_osquery_version", query),
        shard=_first("shard", entry),
        denylist=_first("denylist", entry) is not False,
        description=_first("description", entry, query),
    )


def _fleet_pack(
    spec: dict[str, Any], queries: dict[str, dict[str, Any]], warnings: list[str]
) -> Pack:
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise ConvertError("a FleetDM pack has no name")
    if spec.get("disabled"):
        warnings.append(f"pack {name!r} is disabled in Fleet; converted anyway")
    if spec.get("targets"):
        warnings.append(f"pack {name!r}: Fleet targets have no osquery equivalent; dropped")
    scheduled = []
    for entry in spec.get("queries") or []:
        if not isinstance(entry, dict) or not entry.get("query"):
            raise ConvertError(f"pack {name!r}: every entry needs 'query' (a query name)")
        for key in sorted(set(entry) - _ENTRY_KEYS):
            warnings.append(f"pack {name!r}: entry key {key!r} has no osquery equivalent")
        if entry["query"] not in queries:
            raise ConvertError(f"pack {name!r} uses query {entry['query']!r}, which is not defined")
        scheduled.append(
            _scheduled(name, entry.get("name") or entry["query"], entry, queries[entry["query"]])
        )
    return Pack(name=name, queries=tuple(scheduled), platform=_first("platform", spec))


def from_fleet_yaml(text: str, name: str, source: str | None = None) -> Conversion:
    """Packs from FleetDM spec YAML; scheduled queries outside packs form pack ``name``."""
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ConvertError(f"{source or name}: invalid YAML: {exc}") from exc
    queries: dict[str, dict[str, Any]] = {}
    pack_specs: list[dict[str, Any]] = []
    warnings: list[str] = []
    for number, doc in enumerate(documents, start=1):
        if not isinstance(doc, dict) or not isinstance(doc.get("spec"), dict):
            raise ConvertError(f"document {number} is not a FleetDM spec (apiVersion/kind/spec)")
        kind, spec = doc.get("kind"), doc["spec"]
        if kind == "query":
            if not spec.get("name") or not spec.get("query"):
                raise ConvertError(f"document {number}: a query needs 'name' and 'query'")
            queries[spec["name"]] = spec
        elif kind == "pack":
            pack_specs.append(spec)
        else:
            warnings.append(f"document {number}: kind {kind!r} is not a pack or query; skipped")
    packs = [_fleet_pack(spec, queries, warnings) for spec in pack_specs]
    used = {
        e.get("query") for s in pack_specs for e in s.get("queries") or [] if isinstance(e, dict)
    }
    loose = [q for qname, q in queries.items() if qname not in used]
    standalone = [_scheduled(name, q["name"], {}, q) for q in loose if q.get("interval")]
    for q in loose:
        if not q.get("interval"):
            warnings.append(f"query {q['name']!r} is in no pack and has no interval; skipped")
    if standalone:
        packs.append(Pack(name=name, queries=tuple(standalone)))
    return Conversion(tuple(packs), tuple(warnings))
