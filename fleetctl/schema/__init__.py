"""osquery's table schemas (copied from osquery's specs) plus this project's extension tables.

Data only; ``fleetctl.packs.validate`` and the embedded engine read it.
"""
