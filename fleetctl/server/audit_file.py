"""The audit trail's copy in a file (``serve --audit-file``): each entry, once stored,
as one JSON object on a line of its own, for a log shipper to follow.

Every server process appends to the same file: each line goes out in one ``write`` on
a descriptor opened with ``O_APPEND``, so the lines of several processes never mix.
The store stays the record; a line that cannot be written is logged, and the call's
answer stands.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import orjson

from storage import audit

log = logging.getLogger("fleetctl.audit")


def line(entry: audit.Entry, entry_hash: str) -> bytes:
    """The entry as its JSON line: the fields its hash covers, and the hash."""
    fields = {name: getattr(entry, name) for name in audit.SIGNED}
    return orjson.dumps(fields | {"hash": entry_hash}) + b"\n"


def append(path: Path | str, entry: audit.Entry, entry_hash: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line(entry, entry_hash))
        finally:
            os.close(fd)
    except OSError:
        log.exception("could not append the audit entry of %s to %s", entry.action, path)
