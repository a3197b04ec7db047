"""Distributed query ids the server makes up, and reading them back from a host's answer.

A distributed query is handed to osqueryd under an id (``distributed/read``) and comes
back under that id (``distributed/write``). The server's own queries are numbered rows
of one kind (a campaign, a dynamic label), so an id is the kind's prefix followed by the
row's id: ``fleetctl_campaign_12``, ``fleetctl_label_7``.
"""

from __future__ import annotations

from dataclasses import dataclass

#: More digits than any id the store hands out: a longer number is made up.
_MAX_DIGITS = 18


@dataclass(frozen=True)
class QueryIds:
    """Ids of one kind of distributed query: ``prefix`` followed by a row id."""

    prefix: str

    def encode(self, row_id: int) -> str:
        return f"{self.prefix}{row_id}"

    def decode(self, query_id: str) -> int | None:
        """The row id in an id as ``encode`` writes it, else None: only that exact form,
        so no id a host makes up (``²``, leading zeros, 30 digits) reaches the store."""
        rest = query_id.removeprefix(self.prefix)
        if not (rest.isascii() and rest.isdigit() and len(rest) <= _MAX_DIGITS):
            return None
        value = int(rest)
        return value if self.encode(value) == query_id else None


CAMPAIGN_QUERIES = QueryIds("fleetctl_campaign_")
LABEL_QUERIES = QueryIds("fleetctl_label_")
