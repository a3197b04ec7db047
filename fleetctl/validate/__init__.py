"""Purple-team validation: run IPC-abuse scenarios and benign look-alikes on this host
and check that detection flags exactly the former (``fleetctl validate``)."""

from fleetctl.validate.burners import cpu_burners
from fleetctl.validate.runner import Outcome, Pipeline, run_scenarios
from fleetctl.validate.scenarios import SCENARIOS, Scenario

__all__ = ["SCENARIOS", "Outcome", "Pipeline", "Scenario", "cpu_burners", "run_scenarios"]
