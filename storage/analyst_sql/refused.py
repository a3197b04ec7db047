"""The one error analyst SQL raises for what the analyst can fix."""

from __future__ import annotations


class Refused(ValueError):
    """The query was refused or failed: the message says why, in one line."""
