"""The Linux evented tables, declared with osquery's schema and always empty here.

osqueryd fills ``process_events``, ``socket_events`` and ``process_file_events`` from
its Linux audit publisher (``auditeventpublisher``, the kernel audit netlink socket;
off unless ``--disable_audit=false``) and, in the 5.23.x releases, ``bpf_process_events``
and ``bpf_socket_events`` from ``BPFEventPublisher`` (eBPF probes; off unless
``--enable_bpf_events=true``). An evented table returns the events its publisher
buffered since the previous query; nothing is read from the system at query time.

This engine has no event publisher: it does not register as the kernel's audit daemon
(a role one process holds at a time, usually auditd) and loads no eBPF programs. The
tables exist so that pack queries naming them compile and run, and they return no
rows, which is what osqueryd returns for them while their publisher is disabled, as it
is by default. ``osquery_events`` says the same: each publisher and subscriber below is
listed with ``active`` 0, no subscriptions and no events.
"""

from __future__ import annotations

from typing import Any

from fleetctl.tables.runtime import EventSource
from fleetctl.tables.scan import Constraints, Scan

#: Evented table (osquery's subscriber name) -> the publisher osquery feeds it from.
SUBSCRIBERS: dict[str, str] = {
    "process_events": "auditeventpublisher",
    "socket_events": "auditeventpublisher",
    "process_file_events": "auditeventpublisher",
    "bpf_process_events": "BPFEventPublisher",
    "bpf_socket_events": "BPFEventPublisher",
}


def generate_nothing(constraints: Constraints, scan: Scan) -> list[dict[str, Any]]:
    """No publisher, so no buffered events."""
    return []


def event_sources(tables: set[str] | frozenset[str]) -> list[EventSource]:
    """osquery_events rows for the evented ``tables``: their publishers, then the
    subscribers, each sorted by name as osquery's EventFactory lists them; none active."""
    subscribers = sorted(name for name in SUBSCRIBERS if name in tables)
    publishers = sorted({SUBSCRIBERS[name] for name in subscribers})
    return [EventSource(p, p, "publisher") for p in publishers] + [
        EventSource(s, SUBSCRIBERS[s], "subscriber") for s in subscribers
    ]
