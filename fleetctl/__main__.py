"""Allow ``python -m fleetctl`` (named ``fleetctl`` in help and shell completion)."""

from fleetctl.cli import main

main(prog_name="fleetctl")
