"""The ``fleetctl`` command line: one small module per command group.

Client commands talk to a running server's admin API (see ``fleetctl.client``); the
server and agent commands run in-process. Each group lives in its own module and is
added here.
"""

from __future__ import annotations

import click

from fleetctl import __version__
from fleetctl.cli.agent import agent
from fleetctl.cli.db import db
from fleetctl.cli.detect import baseline, detect, findings, trace
from fleetctl.cli.hosts import carves, data_loss, hosts, results, status_logs
from fleetctl.cli.hunts import hunt
from fleetctl.cli.labels import labels
from fleetctl.cli.packs import packs
from fleetctl.cli.query import query
from fleetctl.cli.serve import serve
from fleetctl.cli.shell import shell
from fleetctl.cli.sql import sql
from fleetctl.cli.up import up
from fleetctl.cli.validate import validate
from fleetctl.extension.command import extension


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fleetctl")
def main() -> None:
    """Detect abuse of inter-process communication (ATT&CK T1559) across an osquery fleet."""


main.add_command(up)
main.add_command(serve)
main.add_command(db)
main.add_command(hosts)
main.add_command(results)
main.add_command(status_logs)
main.add_command(data_loss)
main.add_command(carves)
main.add_command(shell)
main.add_command(extension)
main.add_command(packs)
main.add_command(agent)
main.add_command(labels)
main.add_command(sql)
main.add_command(query)
main.add_command(hunt)
main.add_command(findings)
main.add_command(baseline)
main.add_command(trace)
main.add_command(detect)
main.add_command(validate)
