"""The admin API's roles, lowest first: ``observer`` reads hosts, results, findings and
coverage; ``hunter`` also runs live queries, hunts and analyst SQL and triages findings;
``admin`` may do everything, including managing users, tokens, packs and secrets."""

from __future__ import annotations

from enum import IntEnum


class Role(IntEnum):
    OBSERVER = 1
    HUNTER = 2
    ADMIN = 3

    @classmethod
    def named(cls, name: str) -> Role:
        """The role called ``name``; a ValueError naming the roles otherwise."""
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"unknown role {name!r}: one of {', '.join(NAMES)}") from None

    @property
    def label(self) -> str:
        return self.name.lower()


NAMES = tuple(r.name.lower() for r in Role)
