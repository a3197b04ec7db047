"""The fault suite: a real ``fleetctl serve`` under kill -9, database restarts and hostile input.

Run it with ``python -m tests.fault`` (see ``__main__``); it prints one table row per case
and exits non-zero when any case fails. Its modules are not pytest modules: each case
starts real processes and takes seconds, so the suite is its own command.
"""
