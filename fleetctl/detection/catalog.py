"""Which programs are shells, interpreters, admin tools, Office apps or IPC relays.

These lists are the fixed part of the scoring: they say what a child *is*. What is
*expected* on a given fleet (which parents may start which children, which socket and
FIFO paths are normal) is the baseline's job and lives in an editable file instead
(``fleetctl.detection.baseline``). Names are matched with shell-style globs against a
process's executable basename and its ``name`` (comm), lower-cased on Windows.

Sources: the shell and interpreter sets of the shipped hunt pack ``t1559-hunts.json``;
the Office parents and LOLBin children of ``../shared/detection/ipc-abuse.md`` section 4
(SigmaHQ and elastic/detection-rules use the same sets); chainguard-dev/osquery-defense-kit
for the Linux admin and download tools.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from fleetctl.detection.globs import any_glob

# -- Linux / macOS -----------------------------------------------------------------------

POSIX_SHELLS = (
    "sh",
    "bash",
    "dash",
    "zsh",
    "ksh",
    "mksh",
    "ash",
    "busybox",
    "fish",
    "tcsh",
    "csh",
    "yash",
    "rbash",
    "pwsh",
)
POSIX_INTERPRETERS = (
    "python",
    "python[0-9]*",
    "pypy*",
    "perl",
    "perl[0-9]*",
    "ruby",
    "ruby[0-9]*",
    "php",
    "php[0-9]*",
    "lua",
    "lua[0-9]*",
    "luajit",
    "node",
    "nodejs",
    "deno",
    "bun",
    "tclsh*",
    "wish*",
    "expect",
    "guile*",
    "irb",
    "osascript",
    "jshell",
    "rscript",
    "Rscript",
)
LINUX_ADMIN_TOOLS = (
    "id",
    "whoami",
    "uname",
    "hostname",
    "hostnamectl",
    "groups",
    "w",
    "who",
    "last",
    "curl",
    "wget",
    "nc",
    "ncat",
    "netcat",
    "nc.*",
    "socat",
    "telnet",
    "ssh",
    "scp",
    "sftp",
    "base64",
    "xxd",
    "chmod",
    "chown",
    "chattr",
    "crontab",
    "at",
    "useradd",
    "usermod",
    "adduser",
    "passwd",
    "chpasswd",
    "sudo",
    "su",
    "doas",
    "pkexec",
    "systemctl",
    "iptables",
    "nft",
    "ip",
    "ifconfig",
    "ss",
    "netstat",
    "tcpdump",
    "nmap",
    "openssl",
    "mkfifo",
    "mknod",
    "setcap",
    "getcap",
    "insmod",
    "modprobe",
    "dd",
    "gdb",
    "strace",
    "ltrace",
    "ptrace",
    "busctl",
    "gdbus",
    "dbus-send",
    "launchctl",
    "security",
    "dscl",
    "csrutil",
    "networksetup",
    "screencapture",
    "system_profiler",
    "sw_vers",
    "pbpaste",
    "kextload",
)

# Programs whose whole purpose is to connect a process's stdio to a socket: a parent from
# this list starting a shell is socat EXEC/ncat -e (ipc-abuse.md scenarios 3, 5, 6).
RELAY_TOOLS = (
    "socat",
    "ncat",
    "nc",
    "netcat",
    "nc.openbsd",
    "nc.traditional",
    "cryptcat",
    "pwncat*",
    "telnet",
    "openssl",
    "stunnel*",
    "websocat",
    "chisel",
)

# A pipe from one of these into a shell is a download cradle (``curl ... | sh``).
DOWNLOADERS = ("curl", "wget", "fetch", "aria2c", "lwp-request", "GET", "ftp", "tftp")

# -- Windows -----------------------------------------------------------------------------

WINDOWS_SHELLS = (
    "cmd.exe",
    "powershell.exe",
    "pwsh.exe",
    "powershell_ise.exe",
    "bash.exe",
    "wsl.exe",
)
WINDOWS_INTERPRETERS = (
    "wscript.exe",
    "cscript.exe",
    "mshta.exe",
    "python*.exe",
    "pythonw*.exe",
    "perl.exe",
    "ruby.exe",
    "node.exe",
    "java.exe",
    "javaw.exe",
)
WINDOWS_ADMIN_TOOLS = (
    "rundll32.exe",
    "regsvr32.exe",
    "certutil.exe",
    "bitsadmin.exe",
    "msiexec.exe",
    "wmic.exe",
    "schtasks.exe",
    "at.exe",
    "net.exe",
    "net1.exe",
    "sc.exe",
    "reg.exe",
    "whoami.exe",
    "nltest.exe",
    "mmc.exe",
    "vssadmin.exe",
    "bcdedit.exe",
    "wevtutil.exe",
    "netsh.exe",
    "tasklist.exe",
    "taskkill.exe",
    "systeminfo.exe",
    "ipconfig.exe",
    "installutil.exe",
    "regasm.exe",
    "regsvcs.exe",
    "msbuild.exe",
    "cmstp.exe",
    "forfiles.exe",
    "hh.exe",
    "psexec*.exe",
    "paexec*.exe",
    "curl.exe",
    "ntdsutil.exe",
    "dsquery.exe",
    "csc.exe",
    "odbcconf.exe",
    "msxsl.exe",
)

OFFICE_PARENTS = (
    "winword.exe",
    "excel.exe",
    "powerpnt.exe",
    "msaccess.exe",
    "mspub.exe",
    "onenote.exe",
    "visio.exe",
    "eqnedt32.exe",
    "outlook.exe",
)
OFFICE_LOLBINS = (
    "cmd.exe",
    "powershell.exe",
    "pwsh.exe",
    "mshta.exe",
    "wscript.exe",
    "cscript.exe",
    "rundll32.exe",
    "regsvr32.exe",
    "certutil.exe",
    "bitsadmin.exe",
    "msiexec.exe",
    "wmic.exe",
    "schtasks.exe",
)

# -- macOS -------------------------------------------------------------------------------

MACOS_OFFICE_PATHS = ("/Applications/Microsoft *.app/Contents/MacOS/*",)
MACOS_OFFICE_CHILDREN = (
    "sh",
    "bash",
    "zsh",
    "dash",
    "ksh",
    "curl",
    "osascript",
    "python*",
    "perl*",
    "ruby*",
)

# Child classes in ranking order; ``classify`` returns the first that matches.
SHELL, INTERPRETER, ADMIN_TOOL = "shell", "interpreter", "admin tool"


_CLASSES: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "posix": (
        (SHELL, POSIX_SHELLS),
        (INTERPRETER, POSIX_INTERPRETERS),
        (ADMIN_TOOL, LINUX_ADMIN_TOOLS),
    ),
    "windows": (
        (SHELL, WINDOWS_SHELLS),
        (INTERPRETER, WINDOWS_INTERPRETERS),
        (ADMIN_TOOL, WINDOWS_ADMIN_TOOLS),
    ),
}


def matches_any(names: Iterable[str], patterns: Iterable[str]) -> bool:
    """True if any non-empty name matches any glob pattern (case-sensitive)."""
    return any_glob(patterns, names)


def classify(names: Iterable[str], platform: str) -> str | None:
    """``shell``, ``interpreter``, ``admin tool`` or None for a process's names."""
    return _classify(tuple(n for n in names if n), platform == "windows")


@lru_cache(maxsize=16384)
def _classify(candidates: tuple[str, ...], windows: bool) -> str | None:
    """A host has a few hundred distinct name sets, judged again on every change."""
    if windows:
        candidates = tuple(n.lower() for n in candidates)
    for label, patterns in _CLASSES["windows" if windows else "posix"]:
        if matches_any(candidates, patterns):
            return label
    return None
