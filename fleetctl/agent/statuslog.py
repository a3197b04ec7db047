"""Status log lines: what osqueryd's glog sends through the TLS logger.

Each message goes to Python logging and, at or above ``--logger_min_status`` and unless
``--tls_disable_status_log``, into the log buffer as a status line with the caller's
file and line, the agent version and the current decorations.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Mapping

from fleetctl.agent.buffer import append_lines
from fleetctl.agent.flags import Flags
from fleetctl.agent.logformat import status_line
from fleetctl.agent.state import StateDB

log = logging.getLogger("fleetctl.agent")

INFO, WARNING, ERROR = 0, 1, 2
_LEVELS = {INFO: logging.INFO, WARNING: logging.WARNING, ERROR: logging.ERROR}


class StatusLog:
    def __init__(
        self,
        state: StateDB,
        flags: Flags,
        identity: Callable[[], str],
        version: Callable[[], str],
        decorations: Callable[[], Mapping[str, str]],
    ) -> None:
        self._state = state
        self._flags = flags
        self._identity = identity
        self._version = version
        self._decorations = decorations

    def info(self, message: str) -> None:
        self._emit(INFO, message)

    def warning(self, message: str) -> None:
        self._emit(WARNING, message)

    def error(self, message: str) -> None:
        self._emit(ERROR, message)

    def _emit(self, severity: int, message: str) -> None:
        log.log(_LEVELS[severity], "%s", message)
        if self._flags.get_bool("tls_disable_status_log"):
            return
        if severity < self._flags.get_int("logger_min_status"):
            return
        caller = sys._getframe(2)
        line = status_line(
            host_identifier=self._identity(),
            unix_time=int(time.time()),
            severity=severity,
            filename=os.path.basename(caller.f_code.co_filename),
            line=caller.f_lineno,
            message=message,
            version=self._version(),
            decorations=self._decorations(),
            top_level=self._flags.get_bool("decorations_top_level"),
        )
        with self._state.transaction() as conn:
            append_lines(conn, "status", [line], self._flags.get_int("logger_tls_max_linesize"))
