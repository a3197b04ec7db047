"""Single-row host tables: ``system_info``, ``os_version``, ``kernel_info``, ``uptime``,
``time``.

Each mirrors osquery's Linux implementation. Where osquery needs something this engine
does not have, the substitute is named: ``hostname`` is the kernel host name (osquery
resolves an FQDN, which can block on DNS), ``cpu_brand`` comes from /proc/cpuinfo
(osquery uses the cpuid table), hardware fields come from /sys/class/dmi/id (osquery
parses raw SMBIOS), and without DMI the host uuid falls back to /etc/machine-id (osquery
invents a random one and keeps it in its database).
"""

from __future__ import annotations

import os
import re
import socket
import time
from typing import Any

from fleetctl.tables import _etc, _proc
from fleetctl.tables.scan import Constraints, Scan

_DMI = "/sys/class/dmi/id"


def _dmi(name: str) -> str | None:
    text = _proc.read_text(f"{_DMI}/{name}")
    return None if text is None else text.strip()


def host_uuid(etc_root: str = "/etc") -> str:
    """SMBIOS product uuid, else /etc/machine-id in uuid form, else empty."""
    uuid = _dmi("product_uuid")
    if uuid:
        return uuid
    machine_id = (_proc.read_text(f"{etc_root}/machine-id") or "").strip()
    if re.fullmatch(r"[0-9a-fA-F]{32}", machine_id):
        m = machine_id.lower()
        return f"{m[:8]}-{m[8:12]}-{m[12:16]}-{m[16:20]}-{m[20:]}"
    return ""


def _cpuinfo(proc_root: str) -> tuple[dict[str, str], int]:
    """First processor's fields, and the number of distinct physical cores."""
    text = _proc.read_text(f"{proc_root}/cpuinfo") or ""
    first: dict[str, str] = {}
    cores: set[tuple[str, str]] = set()
    physical = core = ""
    for block_index, block in enumerate(text.split("\n\n")):
        for line in block.split("\n"):
            key, sep, value = line.partition(":")
            if not sep:
                continue
            key, value = key.strip(), value.strip()
            if block_index == 0:
                first.setdefault(key, value)
            if key == "physical id":
                physical = value
            elif key == "core id":
                core = value
        if core or physical:
            cores.add((physical, core))
    return first, len(cores)


def generate_system_info(constraints: Constraints, scan: Scan) -> list[dict[str, Any]]:
    hostname = socket.gethostname()
    cpu, physical_cores = _cpuinfo(scan.proc_root)
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        memory = -1
    row: dict[str, Any] = {
        "hostname": hostname,
        "uuid": scan.runtime.host_uuid or host_uuid(scan.etc_root),
        "cpu_type": os.uname().machine,
        "cpu_subtype": cpu.get("model", "0"),
        "cpu_brand": cpu.get("model name"),
        "cpu_physical_cores": physical_cores or os.cpu_count(),
        "cpu_logical_cores": os.cpu_count() or -1,
        "cpu_sockets": None,
        "cpu_microcode": cpu.get("microcode"),
        "physical_memory": memory,
        "computer_name": hostname,
        "local_hostname": hostname,
    }
    fields = {
        "hardware_vendor": "sys_vendor",
        "hardware_model": "product_name",
        "hardware_version": "product_version",
        "hardware_serial": "product_serial",
        "board_vendor": "board_vendor",
        "board_model": "board_name",
        "board_version": "board_version",
        "board_serial": "board_serial",
    }
    for column, name in fields.items():
        row[column] = _dmi(name)
    if row["hardware_model"] is None:
        row["hardware_model"] = ""
    return [row]


_OS_RELEASE_COLUMNS = {
    "NAME": "name",
    "VERSION": "version",
    "BUILD_ID": "build",
    "ID": "platform",
    "ID_LIKE": "platform_like",
    "VERSION_CODENAME": "codename",
}


def generate_os_version(constraints: Constraints, scan: Scan) -> list[dict[str, Any]]:
    row: dict[str, Any] = {
        "name": "Unknown",
        "major": 0,
        "minor": 0,
        "patch": 0,
        "platform": "posix",
        "pid_with_namespace": 0,
    }
    text = _proc.read_text(f"{scan.etc_root}/os-release")
    if text:
        for key, value in _etc.parse_os_release(text).items():
            if key in _OS_RELEASE_COLUMNS:
                row[_OS_RELEASE_COLUMNS[key]] = value
            elif key == "VERSION_ID":
                parts = value.split(".", 2)
                for column, part in zip(("major", "minor", "patch"), parts, strict=False):
                    row[column] = part
            elif "CODENAME" in key:
                # Some distributions invent their own *_CODENAME key (osquery #5226).
                row["codename"] = value
    row["arch"] = os.uname().machine
    for release, platform in (("redhat-release", "rhel"), ("gentoo-release", "gentoo")):
        content = _proc.read_text(f"{scan.etc_root}/{release}")
        if content is None:
            continue
        content = " ".join(content.split())
        row["platform"] = row["platform_like"] = platform
        match = re.search(r"([\w+\s]+) .* ([0-9]+)\.([0-9]+)\.?(\w+)?", content)
        if match:
            row.update(
                name=match.group(1),
                major=match.group(2),
                minor=match.group(3),
                patch=match.group(4) or "0",
            )
        row["version"] = content
        row["build"] = ""
        break
    return [row]


def generate_kernel_info(constraints: Constraints, scan: Scan) -> list[dict[str, Any]]:
    row: dict[str, Any] = {}
    cmdline = _proc.read_text(f"{scan.proc_root}/cmdline")
    if cmdline is not None:
        extra = []
        for argument in cmdline.split():
            if argument.startswith("BOOT_IMAGE="):
                row["path"] = argument[len("BOOT_IMAGE=") :]
            elif argument.startswith("root="):
                row["device"] = argument[len("root=") :]
            else:
                extra.append(argument)
        row["arguments"] = " ".join(extra)
    signature = _proc.read_text(f"{scan.proc_root}/version")
    if signature:
        details = signature.split()
        if len(details) > 2 and details[1] == "version":
            row["version"] = details[2]
    return [row]


def generate_uptime(constraints: Constraints, scan: Scan) -> list[dict[str, Any]]:
    uptime = _proc.read_uptime(scan.proc_root)
    if uptime is None:
        return []
    total = int(uptime)
    return [
        {
            "days": total // 86400,
            "hours": total % 86400 // 3600,
            "minutes": total % 3600 // 60,
            "seconds": total % 60,
            "total_seconds": total,
        }
    ]


def ascii_time(moment: time.struct_time) -> str:
    """osquery's log timestamp: asctime() in UTC plus " UTC" ("Tue Sep 30 17:37:30 2014
    UTC"), the same text as ``calendarTime`` in result logs."""
    return time.asctime(moment) + " UTC"


def generate_time(constraints: Constraints, scan: Scan) -> list[dict[str, Any]]:
    now = int(time.time())
    gmt = time.gmtime(now)
    local_zone = time.strftime("%Z", time.localtime(now))[:4] or "UTC"
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", gmt)
    return [
        {
            "weekday": time.strftime("%A", gmt),
            "year": gmt.tm_year,
            "month": gmt.tm_mon,
            "day": gmt.tm_mday,
            "hour": gmt.tm_hour,
            "minutes": gmt.tm_min,
            "seconds": gmt.tm_sec,
            "timezone": "UTC",
            "local_timezone": local_zone,
            "unix_time": now,
            "timestamp": ascii_time(gmt),
            "datetime": iso,
            "iso_8601": iso,
        }
    ]
