"""Exceptions of the agent.

RequestFailed          a TLS request did not succeed (osquery's Status failure); the
│                      caller keeps what it sent and tries again later
├── NodeInvalid        the server answered ``node_invalid: true``: the key is cleared and
│                      the next request enrolls again
└── EnrollFailed       no node key could be obtained
EngineError            a query failed; ``message`` reads like osquery's (``no such table: x``)
"""

from __future__ import annotations


class RequestFailed(Exception):
    """The server could not be reached or refused the request."""


class NodeInvalid(RequestFailed):
    """The server no longer knows our node key."""


class EnrollFailed(RequestFailed):
    """Enrollment failed after every allowed attempt."""


class EngineError(Exception):
    """A query failed on the engine."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
