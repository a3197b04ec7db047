"""``interface_addresses``: IPv4/IPv6 addresses per interface, over rtnetlink.

osquery walks getifaddrs(3); this reads the same kernel data with pyroute2's IPRoute and
reproduces what glibc and osquery make of it: the IPv4 interface name is the address
label (``eth0:1``), a destination address is ``broadcast`` on broadcast-capable links and
``point_to_point`` otherwise, link-local IPv6 addresses carry ``%<interface>`` as
getnameinfo(NI_NUMERICHOST) prints them, and ``type`` is ``unknown`` on POSIX.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from pyroute2 import IPRoute

from fleetctl.tables.scan import Constraints, Scan

_IFF_BROADCAST = 0x2


def _mask(family: int, prefixlen: int) -> str:
    if family == socket.AF_INET:
        return str(ipaddress.IPv4Network(f"0.0.0.0/{prefixlen}").netmask)
    return str(ipaddress.IPv6Network(f"::/{prefixlen}").netmask)


def _scoped(address: str, family: int, ifname: str) -> str:
    if family == socket.AF_INET6:
        ip = ipaddress.IPv6Address(address)
        if ip.is_link_local or (ip.is_multicast and (ip.packed[1] & 0x0F) == 2):
            return f"{address}%{ifname}"
    return address


def generate(constraints: Constraints, scan: Scan) -> list[dict[str, Any]]:
    rows = []
    with IPRoute() as ipr:
        links = {
            link["index"]: (link.get_attr("IFLA_IFNAME"), link["flags"]) for link in ipr.get_links()
        }
        for msg in ipr.get_addr():
            family = msg["family"]
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            link_name, flags = links.get(msg["index"], (str(msg["index"]), 0))
            name = (msg.get_attr("IFA_LABEL") if family == socket.AF_INET else None) or link_name
            address = msg.get_attr("IFA_ADDRESS")
            local = msg.get_attr("IFA_LOCAL")
            own = local or address
            if own is None:
                continue
            destination = msg.get_attr("IFA_BROADCAST")
            if destination is None and local and address and local != address:
                destination = address
            row: dict[str, Any] = {
                "interface": name,
                "address": _scoped(own, family, link_name),
                "mask": _mask(family, msg["prefixlen"]),
                "broadcast": None,
                "point_to_point": None,
                "type": "unknown",
            }
            if destination is not None:
                key = "broadcast" if flags & _IFF_BROADCAST else "point_to_point"
                row[key] = _scoped(destination, family, link_name)
            rows.append(row)
    return rows
