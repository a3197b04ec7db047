"""Read an admin request's parameters at the edge, bounded to what the store can hold.

Every admin input is hostile until checked: a number past its column's range overflows
SQLite's integer binding (a bare ``OverflowError``) or PostgreSQL's BIGINT (a
``DataError``), a NUL byte is refused by PostgreSQL text and JSONB, a string longer than
its column fails on PostgreSQL but not on SQLite. So every value is checked here, once,
and a bad one answers 400 with a message naming the parameter, the same on both
databases.

Query and path parameters arrive as text (a path's ``{id:int}`` already as an int);
JSON body fields arrive typed, and a JSON integer field must be a JSON integer, not its
text. JSON ``null`` means the field was left out, as the CLI sends it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, overload

from starlette.requests import Request

from fleetctl.errors import BadRequest, NotFound
from fleetctl.timeutil import TIME_EXAMPLES, parse_time, shown
from storage.limits import INT16 as INT16
from storage.limits import INT32 as INT32
from storage.limits import INT64 as INT64
from storage.limits import Bounds
from storage.limits import column_length as column_length
from storage.limits import column_range as column_range

MAX_PARAM_LENGTH = 1024  # no name, reference or time an admin looks up is longer
MAX_BODY_DEPTH = 32  # a pack, the deepest admin body, nests 6 levels
_DECIMAL = re.compile(r"[+-]?[0-9]{1,20}")


def _absent(value: Any) -> bool:
    return value is None or value == ""


def _in_bounds(number: int, name: str, bounds: Bounds) -> int:
    low, high = bounds
    if not low <= number <= high:
        raise BadRequest(f"'{name}' must be an integer from {low} to {high}")
    return number


@overload
def int_param(params: Mapping[str, Any], name: str, bounds: Bounds, default: int) -> int: ...
@overload
def int_param(
    params: Mapping[str, Any], name: str, bounds: Bounds, default: None = None
) -> int | None: ...
def int_param(
    params: Mapping[str, Any], name: str, bounds: Bounds, default: int | None = None
) -> int | None:
    """A query or path parameter that must be a decimal integer within ``bounds``."""
    value = params.get(name)
    if _absent(value):
        return default
    if isinstance(value, int) and not isinstance(value, bool):  # a path's {id:int}
        return _in_bounds(value, name, bounds)
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value.strip()):
        raise BadRequest(f"'{name}' must be an integer from {bounds[0]} to {bounds[1]}")
    return _in_bounds(int(value), name, bounds)


@overload
def int_field(body: Mapping[str, Any], name: str, bounds: Bounds, default: int) -> int: ...
@overload
def int_field(
    body: Mapping[str, Any], name: str, bounds: Bounds, default: None = None
) -> int | None: ...
def int_field(
    body: Mapping[str, Any], name: str, bounds: Bounds, default: int | None = None
) -> int | None:
    """A JSON body field that must be a JSON integer (not text, a float or a bool)."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"'{name}' must be an integer from {bounds[0]} to {bounds[1]}")
    return _in_bounds(value, name, bounds)


@overload
def time_param(params: Mapping[str, Any], name: str, default: int) -> int: ...
@overload
def time_param(params: Mapping[str, Any], name: str, default: None = None) -> int | None: ...
def time_param(params: Mapping[str, Any], name: str, default: int | None = None) -> int | None:
    """A time as ``parse_time`` reads it (``now``, ``15m`` ago, unix seconds, ISO 8601;
    a JSON field may be an integer too), evaluated on the server's clock."""
    value = params.get(name)
    if _absent(value):
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise BadRequest(f"'{name}' must be a time: {TIME_EXAMPLES}")
    try:
        return parse_time(value)
    except ValueError as exc:
        raise BadRequest(f"'{name}': {exc}") from None


@overload
def text_param(
    params: Mapping[str, Any], name: str, *, max_length: int | None = ..., default: str
) -> str: ...
@overload
def text_param(
    params: Mapping[str, Any], name: str, *, max_length: int | None = ..., default: None = None
) -> str | None: ...
def text_param(
    params: Mapping[str, Any],
    name: str,
    *,
    max_length: int | None = None,
    default: str | None = None,
) -> str | None:
    """A string parameter or field, at most ``max_length`` characters (its column's)."""
    value = params.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise BadRequest(f"'{name}' must be a string")
    if max_length is not None and len(value) > max_length:
        raise BadRequest(f"'{name}' is longer than {max_length} characters")
    return value


def required_text(params: Mapping[str, Any], name: str, *, max_length: int | None = None) -> str:
    """Like ``text_param``, and it must be given and not empty."""
    value = text_param(params, name, max_length=max_length)
    if not value:
        raise BadRequest(f"'{name}' is required")
    return value


@overload
def choice_param(
    params: Mapping[str, Any], name: str, choices: Iterable[str], default: str
) -> str: ...
@overload
def choice_param(
    params: Mapping[str, Any], name: str, choices: Iterable[str], default: None = None
) -> str | None: ...
def choice_param(
    params: Mapping[str, Any], name: str, choices: Iterable[str], default: str | None = None
) -> str | None:
    """A parameter that must be one of ``choices``."""
    allowed = tuple(choices)
    value = text_param(params, name, default=default)
    if value is not None and value not in allowed:
        raise BadRequest(f"'{name}' must be one of {', '.join(allowed)}")
    return value


def flag_param(params: Mapping[str, Any], name: str) -> bool:
    """A yes/no parameter: a JSON boolean, or ``1``/``true``/``0``/``false`` as text."""
    value = params.get(name)
    if _absent(value):
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "0", "false"):
        return value.lower() in ("1", "true")
    raise BadRequest(f"'{name}' must be true or false")


def host_ref(ref: str) -> str:
    """A host reference whose digits, if it is all digits, can be a host id.

    ``storage.hosts.find_host`` looks an all-digit reference up as an id first; one past
    BIGINT would overflow the query, and no host has that id.
    """
    digits = ref.lstrip("0")
    if ref.isdigit() and not (ref.isascii() and len(digits) <= 19 and int(digits or 0) <= INT64[1]):
        raise NotFound(f"no host matches {shown(ref)} (id, host identifier, hostname or uuid)")
    return ref


def check_targets(spec: str) -> str:
    """Refuse ``host:N`` targets whose N cannot be a host id, before they reach the store."""
    for part in spec.split(","):
        kind, _, value = part.strip().partition(":")
        if kind == "host" and value:
            host_ref(value)
    return spec


def check_body(body: Any) -> None:
    """No NUL byte in any string of a JSON body, keys included (PostgreSQL refuses it in
    text and JSONB), and no nesting deeper than ``MAX_BODY_DEPTH`` (validators and
    ``json.dumps`` recurse, and Python's recursion limit is below orjson's 1,024 levels).
    Walks iteratively, so the check itself cannot overflow the stack."""
    stack: list[tuple[Any, int]] = [(body, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _refuse_nul(item, "the body")
        elif isinstance(item, dict | list):
            if depth >= MAX_BODY_DEPTH:
                raise BadRequest(f"the body nests deeper than {MAX_BODY_DEPTH} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def _refuse_nul(text: str, where: str) -> None:
    if "\x00" in text:
        raise BadRequest(f"{where} contains a NUL byte")


# Query-string parameters that name what a host sent (a logged query name): the store
# keeps NUL in them through its text encoding, so they may hold one.
HOST_TEXT_PARAMS = frozenset({"query"})


def check_request_text(request: Request) -> None:
    """Query and path parameters: no NUL byte (but in ``HOST_TEXT_PARAMS``), nothing
    longer than ``MAX_PARAM_LENGTH``."""
    for where, items in (
        ("the query string", request.query_params.multi_items()),
        ("the path", list(request.path_params.items())),
    ):
        for key, value in items:
            text = value if isinstance(value, str) else str(value)
            _refuse_nul(key if key in HOST_TEXT_PARAMS else key + text, where)
            if len(text) > MAX_PARAM_LENGTH:
                raise BadRequest(f"'{key}' is longer than {MAX_PARAM_LENGTH} characters")
