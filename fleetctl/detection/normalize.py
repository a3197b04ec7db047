"""Turning osquery's string values into comparable names, numbers and command-line shapes.

Result rows carry every value as a string and SQL NULL as ``""`` (osquery's logger and
distributed results), so every reader goes through ``to_int``. Names and command lines
are normalised here, once, because path keys, baselines and fleet prevalence only work
when two hosts running the same thing produce the same text: a random temp suffix, a pid
or a session hash in a command line must not make every execution look new.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_DELETED = " (deleted)"
_WINDOWS_PATH = re.compile(r"^(?:[A-Za-z]:\\|\\\\|\\\?\?\\)")

# Order matters: the most specific shapes first, plain digits last.
_CMDLINE_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"),
        "<uuid>",
    ),
    # mktemp (tmp.XXXXXXXXXX), Python tempfile (tmpk3j_x9a1, pytest-of-user/pytest-12).
    (re.compile(r"\btmp\.[A-Za-z0-9]{6,}"), "tmp.<rand>"),
    (re.compile(r"\btmp[a-z0-9_]{8}\b"), "tmp<rand>"),
    (re.compile(r"(?<=[-_.])[A-Za-z0-9]{6,}(?=\.(?:sock|fifo|pipe)\b)"), "<rand>"),
    (re.compile(r"\b(?:0x)?(?=[0-9a-fA-F]*[a-fA-F])(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}\b"), "<hex>"),
    (re.compile(r"\d+"), "<n>"),
)
_SPACES = re.compile(r"\s+")
CMDLINE_LIMIT = 512


def to_int(value: object) -> int | None:
    """An osquery string value as an int; ``""`` (SQL NULL) and junk give None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        try:
            return int(float(text))
        except ValueError:
            return None


def text(row: Mapping[str, object], *names: str) -> str:
    """The first non-empty value among ``names`` as a string ("" if none)."""
    for name in names:
        value = row.get(name)
        if value is not None and value != "":
            return str(value)
    return ""


def is_windows_path(path: str) -> bool:
    return bool(_WINDOWS_PATH.match(path))


def basename(path: str) -> str:
    """Last component of a Linux, macOS or Windows path, without `` (deleted)``.

    Windows names are lower-cased because the file system ignores case and osquery reports
    whatever case the process was started with (``WINWORD.EXE`` or ``winword.exe``).
    """
    path = path.strip()
    if path.endswith(_DELETED):
        path = path[: -len(_DELETED)]
    windows = is_windows_path(path) or ("\\" in path and "/" not in path)
    cut = max(path.rfind("/"), path.rfind("\\")) if windows else path.rfind("/")
    name = path[cut + 1 :]
    return name.lower() if windows else name


def argv0(cmdline: str) -> str:
    """Basename of the first word of a command line (quotes stripped)."""
    cmdline = cmdline.strip()
    if not cmdline:
        return ""
    if cmdline[0] in "\"'":
        end = cmdline.find(cmdline[0], 1)
        first = cmdline[1:end] if end > 0 else cmdline[1:]
    else:
        first = cmdline.split(None, 1)[0]
    return basename(first)


def normalize_cmdline(cmdline: str) -> str:
    """A command line's shape: uuids, random temp names, hex ids and numbers collapsed.

    ``sh -c sleep 30`` and ``sh -c sleep 31`` are one shape; so are two pytest temp
    directories. Whitespace is collapsed and the result cut at ``CMDLINE_LIMIT``.
    """
    shape = _SPACES.sub(" ", cmdline).strip()
    for pattern, replacement in _CMDLINE_RULES:
        shape = pattern.sub(replacement, shape)
    return shape[:CMDLINE_LIMIT]


def short_tty(target: str) -> str:
    """``/dev/pts/3`` -> ``pts/3`` as ``logged_in_users.tty`` spells it."""
    return target[len("/dev/") :] if target.startswith("/dev/") else target
