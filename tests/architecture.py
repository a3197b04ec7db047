"""The package dependency graph, drawn from the imports.

``python -m tests.architecture`` prints, for each of fleetctl's subpackages and
top-level modules, ``storage`` and ``migrations``, the others it imports directly
(``TYPE_CHECKING`` imports included), one line each::

    fleetctl.server -> fleetctl.detection, fleetctl.ingest, storage
    storage -> (nothing of ours)

``--module`` draws the same graph module by module instead.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

import grimp

PACKAGES = ("fleetctl", "storage", "migrations")


def layer(module: str) -> str:
    """The node a module belongs to: ``fleetctl.<child>``, or its top-level package."""
    parts = module.split(".")
    if parts[0] == "fleetctl" and len(parts) > 1:
        return ".".join(parts[:2])
    return parts[0]


def module_graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, cache_dir=None)


def edges(by_module: bool = False) -> dict[str, set[str]]:
    """node -> the nodes it imports directly (never itself)."""
    graph = module_graph()
    node = (lambda m: m) if by_module else layer
    out: dict[str, set[str]] = {}
    for module in graph.modules:
        source = node(module)
        targets = out.setdefault(source, set())
        for imported in graph.find_modules_directly_imported_by(module):
            target = node(imported)
            if target != source:
                targets.add(target)
    return out


def render(graph: dict[str, set[str]]) -> Iterable[str]:
    for source in sorted(graph):
        targets = ", ".join(sorted(graph[source])) or "(nothing of ours)"
        yield f"{source} -> {targets}"


def main(argv: list[str]) -> int:
    for line in render(edges(by_module="--module" in argv)):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
