"""Exceptions of fleetctl.

FleetError                 base of everything raised on purpose
├── BadRequest             a client sent something malformed (-> JSON ``error``)
│   └── PayloadTooLarge    body over the configured limit (checked while inflating)
├── NodeInvalid            unknown node key (-> ``node_invalid: true``)
├── NotFound               an admin lookup matched nothing
├── Forbidden              the caller's role does not allow this (-> 403)
└── Unavailable            the server cannot take this now (-> 503; try again later)
"""

from __future__ import annotations


class FleetError(Exception):
    """Base class of fleetctl's own errors."""


class BadRequest(FleetError):
    """The request cannot be accepted as sent; nothing of it was stored."""


class PayloadTooLarge(BadRequest):
    """The (decompressed) body exceeds the configured limit."""


class NodeInvalid(FleetError):
    """The node key is not known; osqueryd should re-enroll."""


class NotFound(FleetError):
    """Nothing matched the lookup."""


class Forbidden(FleetError):
    """The caller may not do this (another user's token, a role above their own)."""


class Unavailable(FleetError):
    """The call is refused for now (a resource is busy or not set up); nothing changed."""
