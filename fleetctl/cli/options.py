"""Options shared by several commands: the server's settings, generated from their one
declaration (``fleetctl.settings``), and ``--skip-missing`` of the commands that send SQL to
hosts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from fleetctl.settings import declaration, declared, default_text

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _type(default: object, minimum: float | None, exclusive: bool) -> click.ParamType[Any] | None:
    if minimum is None:
        return None
    if isinstance(default, float):
        return click.FloatRange(min=minimum, min_open=exclusive)
    return click.IntRange(min=int(minimum), min_open=exclusive)


def setting_option(name: str, **overrides: Any) -> Decorator:
    """The option of setting ``name`` as its ``Setting`` declares it (``overrides`` are
    click.option arguments, e.g. another ``help``). A duration is taken as text, to be
    read by ``fleetctl.settings.from_options``."""
    f, s = declaration(name)
    if s.option is None:
        raise ValueError(f"setting {name!r} has no option")
    kwargs: dict[str, Any] = {"help": s.help}
    if s.env is not None:
        kwargs["envvar"] = s.env
    if isinstance(f.default, tuple):
        kwargs["multiple"] = True
    elif s.existing_file:
        kwargs["type"] = click.Path(exists=True, dir_okay=False, path_type=Path)
    elif f.default is not None:
        kwargs["default"] = default_text(f, s) if s.duration else f.default
        kwargs["show_default"] = True
        kind = None if s.duration else _type(f.default, s.minimum, s.exclusive)
        if s.choices is not None:
            kind = click.Choice(s.choices)
        if kind is not None:
            kwargs["type"] = kind
    else:
        kwargs["default"] = None
        if s.minimum is not None:  # a number with no fixed default (e.g. --workers)
            kwargs["type"] = _type(0, s.minimum, s.exclusive)
    kwargs.update(overrides)
    return click.option(s.option, name, **kwargs)


def server_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Every setting that has an option, in declaration order (``fleetctl serve``)."""
    for f, s in reversed(list(declared())):
        if s.option is not None:
            command = setting_option(f.name)(command)
    return command


skip_missing_option = click.option(
    "--skip-missing",
    is_flag=True,
    help="Send only to the targets that have every table the query reads (without it, "
    "targets lacking one are listed and nothing is sent).",
)
