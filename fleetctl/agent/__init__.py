"""An osquery agent: osqueryd's TLS enroll, config, logger and distributed behaviour.

    from fleetctl.agent import Agent, AgentOptions
    agent = Agent(AgentOptions(server=url, enroll_secret_path=path, state_dir=state))
    agent.start(); ...; agent.stop()

Queries run on the embedded engine (``fleetctl.engine``) or on a real osqueryd through
osquery-python (``fleetctl.agent.engines``). Exceptions are in ``fleetctl.agent.errors``.
"""

from fleetctl.agent.engines import EmbeddedEngine, OsqueryEngine, select_engine
from fleetctl.agent.errors import EngineError, EnrollFailed, NodeInvalid, RequestFailed
from fleetctl.agent.loop import Agent, AgentOptions

__all__ = [
    "Agent",
    "AgentOptions",
    "EmbeddedEngine",
    "EngineError",
    "EnrollFailed",
    "NodeInvalid",
    "OsqueryEngine",
    "RequestFailed",
    "select_engine",
]
