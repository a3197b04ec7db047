"""The one exception the engine raises.

``QueryError(message)`` carries SQLite's message unchanged because osquery reports the
same text (``no such table: x``, ``no such column: y``, ``near "x": syntax error``) in
distributed-query ``messages`` and on osqueryi's stderr.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fleetctl.engine.core import QueryResult


class QueryError(Exception):
    """A query failed; ``message`` reads like osquery's, ``partial`` holds rows produced
    before the failure (if any)."""

    def __init__(self, message: str, *, partial: QueryResult | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.partial = partial
