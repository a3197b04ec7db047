"""DET0493 telemetry coverage: is each host, and each platform, able to show process
creation, lineage, command lines, IPC channels, user and session context, fresh and far
enough back to investigate an IPC-spawned execution chain (``fleetctl coverage``)."""

from fleetctl.coverage.document import coverage_document
from fleetctl.coverage.facts import HostFacts, ValidationRun
from fleetctl.coverage.gather import gather
from fleetctl.coverage.items import ITEMS, Item
from fleetctl.coverage.judge import Cell, Judge

__all__ = [
    "ITEMS",
    "Cell",
    "HostFacts",
    "Item",
    "Judge",
    "ValidationRun",
    "coverage_document",
    "gather",
]
