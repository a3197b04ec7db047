"""Shell globs (``fnmatch``: ``*`` also matches ``/``) over process names and paths,
compiled once per pattern set into one regular expression.

Scoring asks "does any of these names match any of these patterns" for every path it
judges, against the catalog's classes and every baseline rule: pattern by pattern that
was the largest single cost of judging a host. One compiled alternation per set answers
it in one regex call per name, with the same answer as ``fnmatchcase`` on each pair.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from fnmatch import translate
from functools import lru_cache


@lru_cache(maxsize=8192)
def _compiled(patterns: tuple[str, ...], fold: bool) -> re.Pattern[str] | None:
    if not patterns:
        return None
    listed = (p.lower() if fold else p for p in patterns)
    return re.compile("|".join(f"(?:{translate(p)})" for p in listed))


def any_glob(patterns: Iterable[str], names: Iterable[str], *, fold: bool = False) -> bool:
    """True if a non-empty name matches one of the patterns; ``fold``: ignore case (the
    names and patterns of Windows)."""
    compiled = _compiled(patterns if isinstance(patterns, tuple) else tuple(patterns), fold)
    if compiled is None:
        return False
    match = compiled.match
    return any(name and match(name.lower() if fold else name) for name in names)
