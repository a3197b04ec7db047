"""An osquery-compatible SQL engine over ``fleetctl.tables``.

    from fleetctl.engine import Engine
    result = Engine().query("SELECT pid, name FROM processes WHERE pid = 1")
    result.columns, result.rows

Exceptions: ``QueryError`` (any failed query; ``message`` is SQLite's/osquery's text).
"""

from fleetctl.engine.core import Engine, QueryResult
from fleetctl.engine.errors import QueryError
from fleetctl.engine.strings import osquery_string, osqueryi_json, string_rows

__all__ = ["Engine", "QueryError", "QueryResult", "osquery_string", "osqueryi_json", "string_rows"]
