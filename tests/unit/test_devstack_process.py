"""Pidfiles, stale PIDs, starting and stopping plain processes: no database or broker needed."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdc.devstack.process import (
    DevStackError,
    PidFile,
    cmdline_matches,
    pid_alive,
    port_open,
    start_detached,
    stop_pid,
    wait_ports_closed,
    wait_ready,
)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "300"])
    # Between fork and exec the child still shows the parent's command line; on a loaded machine
    # that window is long enough for the tests below to see it.
    deadline = time.monotonic() + 10
    while Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")[0] != b"sleep":
        assert time.monotonic() < deadline, "sleep did not start"
        time.sleep(0.01)
    yield proc
    proc.kill()
    proc.wait()


def _never_ready() -> None:
    raise ConnectionRefusedError("not yet")


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_pidfile_round_trip(tmp_path: Path) -> None:
    pidfile = PidFile(tmp_path / "pids" / "svc.pid")
    assert pidfile.read() is None
    pidfile.write(1234)
    assert pidfile.read() == 1234
    pidfile.remove()
    assert not pidfile.path.exists()


@pytest.mark.parametrize("content", ["", "garbage", "-5", "0"])
def test_unreadable_pidfile_counts_as_down_and_is_removed(tmp_path: Path, content: str) -> None:
    pidfile = PidFile(tmp_path / "svc.pid")
    pidfile.path.write_text(content)
    assert pidfile.running_pid(["anything"]) is None
    assert not pidfile.path.exists()


def test_pidfile_of_a_gone_process_is_stale(tmp_path: Path) -> None:
    pidfile = PidFile(tmp_path / "svc.pid")
    pidfile.write(_dead_pid())
    assert pidfile.running_pid(["true"]) is None
    assert not pidfile.path.exists()


def test_pid_reused_by_another_program_is_not_ours(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    pidfile = PidFile(tmp_path / "svc.pid")
    pidfile.write(sleeper.pid)
    # The PID is alive but runs `sleep`, not a mariadbd on our data directory.
    assert pid_alive(sleeper.pid)
    assert pidfile.running_pid(["mariadbd", f"--datadir={tmp_path}"]) is None
    assert not pidfile.path.exists()
    assert sleeper.poll() is None  # and we did not touch that program


def test_pid_with_matching_cmdline_is_ours(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    pidfile = PidFile(tmp_path / "svc.pid")
    pidfile.write(sleeper.pid)
    assert cmdline_matches(sleeper.pid, ["sleep", "300"])
    assert pidfile.running_pid(["sleep", "300"]) == sleeper.pid


def test_zombie_counts_as_gone() -> None:
    proc = subprocess.Popen(["true"])
    time.sleep(0.3)  # exited, not yet reaped by us: a zombie
    assert not pid_alive(proc.pid)
    proc.wait()


def test_start_detached_logs_and_writes_pidfile_then_stop(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "svc.log"
    pidfile = PidFile(tmp_path / "svc.pid")
    pid = start_detached(
        [sys.executable, "-c", "import time; print('hello from svc', flush=True); time.sleep(300)"],
        log,
        pidfile,
    )
    assert pidfile.read() == pid

    def printed_hello() -> None:
        assert "hello from svc" in log.read_text()

    wait_ready("svc", pid, printed_hello, log, 10)
    assert "starting:" in log.read_text()
    assert stop_pid(pid, timeout=5) is True
    assert not pid_alive(pid)


def test_stop_escalates_to_sigkill_for_the_whole_group(tmp_path: Path) -> None:
    pidfile = PidFile(tmp_path / "svc.pid")
    # A shell that ignores SIGTERM, with a child in its process group.
    pid = start_detached(["sh", "-c", "trap '' TERM; sleep 300 & wait"], tmp_path / "svc.log", pidfile)
    time.sleep(0.3)
    started = time.monotonic()
    assert stop_pid(pid, signal.SIGTERM, timeout=1) is False
    assert time.monotonic() - started < 10
    assert not pid_alive(pid)
    group = subprocess.run(["pgrep", "-g", str(pid)], capture_output=True, text=True, check=False)
    assert not [int(member) for member in group.stdout.split() if pid_alive(int(member))]


def test_wait_ready_fails_early_with_the_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    pid = start_detached(
        ["sh", "-c", "echo 'fatal: cannot open datadir' >&2; exit 3"], log, PidFile(tmp_path / "p")
    )

    started = time.monotonic()
    with pytest.raises(DevStackError) as excinfo:
        wait_ready("svc", pid, _never_ready, log, timeout=60)
    assert time.monotonic() - started < 10
    message = str(excinfo.value)
    assert "exited during startup" in message
    assert str(log) in message
    assert "fatal: cannot open datadir" in message


def test_wait_ready_times_out_naming_the_log(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    pid = start_detached(["sleep", "300"], log, PidFile(tmp_path / "p"))
    try:
        with pytest.raises(DevStackError, match="did not answer within"):
            wait_ready("svc", pid, _never_ready, log, timeout=1, interval=0.2)
    finally:
        stop_pid(pid, timeout=5)


def test_port_checks() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    assert port_open(port)
    assert wait_ports_closed([port], timeout=0.3) == [port]
    server.close()
    assert not port_open(port)
    assert wait_ports_closed([port], timeout=1) == []
