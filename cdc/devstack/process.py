"""Plain-process supervision for the dev stack: start detached, pidfiles, readiness, stop by PID.

A service is identified by its pidfile *and* its command line: a PID in a stale pidfile that the
kernel has since handed to another program is not ours (``/proc/<pid>/cmdline`` must contain the
markers the service was started with, e.g. the binary name and its data directory).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# Popen objects of the services this Python process started, kept so that they are reaped (no
# zombies) when we stop them, and never garbage-collected (and warned about) while they run.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class DevStackError(RuntimeError):
    """A dev stack service could not be started, checked or stopped; the message says what to do."""


class MissingBinaryError(DevStackError):
    """A program the dev stack needs is not installed; the message names the Debian package."""

    def __init__(self, program: str, package: str) -> None:
        super().__init__(f"{program} not found: install the Debian package with `apt-get install {package}`")
        self.program = program
        self.package = package


# Searched after PATH: daemons live in sbin, which a normal user's PATH often lacks.
SYSTEM_DIRS: tuple[str, ...] = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def find_binary(program: str, package: str, candidates: Sequence[str | Path] = ()) -> Path:
    """The path of `program` (first an explicit candidate, then PATH and the sbin directories)."""
    for candidate in candidates:
        path = Path(candidate)
        if path.is_file() and os.access(path, os.X_OK):
            return path
    search = os.pathsep.join([os.environ.get("PATH", ""), *SYSTEM_DIRS])
    found = shutil.which(program, path=search)
    if found is None:
        raise MissingBinaryError(program, package)
    return Path(found)


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log file at {path})"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else f"({path} is empty)"


# ---------------------------------------------------------------------------------------------
# PIDs


def _proc_state(pid: int) -> str | None:
    """The one-letter state from /proc/<pid>/stat, or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # "pid (comm) S ..." and comm may contain spaces and parentheses: split after the last ")".
    return stat.rsplit(")", 1)[1].split()[0]


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def pid_alive(pid: int) -> bool:
    """True when `pid` runs (a zombie counts as gone)."""
    _reap(pid)
    state = _proc_state(pid)
    return state is not None and state not in ("Z", "X")


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def cmdline_matches(pid: int, markers: Sequence[str]) -> bool:
    """True when every marker is a substring of the process's command line."""
    joined = " ".join(cmdline(pid))
    return bool(joined) and all(marker in joined for marker in markers)


@dataclass(frozen=True)
class PidFile:
    path: Path

    def read(self) -> int | None:
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return None
        try:
            pid = int(text)
        except ValueError:
            return None
        return pid if pid > 0 else None

    def write(self, pid: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{pid}\n")
        tmp.replace(self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def running_pid(self, markers: Sequence[str]) -> int | None:
        """The PID of our running service, or None; a stale pidfile (process gone, or the PID now
        belongs to another program) is removed."""
        pid = self.read()
        if pid is None:
            if self.path.exists():
                self.remove()
            return None
        if pid_alive(pid) and cmdline_matches(pid, markers):
            return pid
        self.remove()
        return None


# ---------------------------------------------------------------------------------------------
# Ports


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_ports_closed(ports: Sequence[int], timeout: float = 15.0) -> list[int]:
    """Wait until nothing listens on `ports`; returns the ports still open at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        still_open = [port for port in ports if port_open(port)]
        if not still_open or time.monotonic() >= deadline:
            return still_open
        time.sleep(0.2)


# ---------------------------------------------------------------------------------------------
# Start, wait, stop


def start_detached(
    argv: Sequence[str],
    log_path: Path,
    pidfile: PidFile,
    *,
    user: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start `argv` in its own session with stdin closed and stdout/stderr appended to `log_path`.

    The log file is opened here (by us), so a service running as another user (`user`) needs no
    write permission on the log directory.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            user=user,
            group=_primary_group(user),
            extra_groups=[] if user is not None else None,
            env=env,
            cwd=cwd,
        )
    _CHILDREN[proc.pid] = proc
    pidfile.write(proc.pid)
    return proc.pid


def _primary_group(user: str | None) -> int | None:
    if user is None:
        return None
    import pwd

    return pwd.getpwnam(user).pw_gid


def wait_ready(
    name: str,
    pid: int,
    probe: Callable[[], None],
    log_path: Path,
    timeout: float,
    interval: float = 0.5,
) -> None:
    """Call `probe` until it returns without raising; fail early when the process dies."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            raise DevStackError(
                f"{name} (pid {pid}) exited during startup; see {log_path}; last lines:\n{log_tail(log_path)}"
            )
        try:
            probe()
            return
        except Exception as exc:  # noqa: BLE001 - any failure of the probe means "not ready yet"
            last_error = exc
        time.sleep(interval)
    raise DevStackError(
        f"{name} (pid {pid}) did not answer within {timeout:.0f}s (last error: {last_error}); "
        f"see {log_path}; last lines:\n{log_tail(log_path)}"
    )


def stop_pid(pid: int, graceful: signal.Signals = signal.SIGTERM, timeout: float = 30.0) -> bool:
    """Send `graceful`, wait up to `timeout`, then SIGKILL the process and its process group.

    Returns True when the graceful signal was enough.
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, graceful)
    if _wait_gone(pid, timeout):
        _kill_group_leftovers(pid)
        return True
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    if not _wait_gone(pid, 10.0):
        raise DevStackError(f"process {pid} survived SIGKILL")
    _kill_group_leftovers(pid)
    return False


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _kill_group_leftovers(pgid: int) -> None:
    """Children of a service (PostgreSQL backends) normally exit with it; make sure of it."""
    deadline = time.monotonic() + 5.0
    while _group_members(pgid):
        if time.monotonic() >= deadline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            return
        time.sleep(0.1)


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.getpgid(int(entry.name)) == pgid and pid_alive(int(entry.name)):
                members.append(int(entry.name))
    return members


def run_logged(
    argv: list[str], log_file: Path, what: str, *, cwd: Path | None = None, user: str | None = None
) -> None:
    """Run a set-up command (install, format, download) with its output appended to ``log_file``;
    a failure raises DevStackError naming ``what``, the exit code and the log's last lines."""
    import pwd

    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        log.write(f"\n=== {what}\n".encode())
        log.flush()
        result = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            user=user,
            group=pwd.getpwnam(user).pw_gid if user else None,
            extra_groups=[] if user else None,
            check=False,
        )
    if result.returncode != 0:
        tail = log_tail(log_file)
        raise DevStackError(f"{what} failed (exit {result.returncode}); see {log_file}:\n{tail}")
