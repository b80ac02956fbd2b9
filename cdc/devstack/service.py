"""One dev stack service as a plain process: the shape MariaDB, Kafka and PostgreSQL fill in."""

from __future__ import annotations

import enum
import signal
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from cdc.devstack.process import (
    DevStackError,
    PidFile,
    port_open,
    start_detached,
    stop_pid,
    wait_ports_closed,
    wait_ready,
)
from cdc.devstack.settings import ServiceName, StackSettings


class ServiceState(enum.StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"


class StartOutcome(enum.StrEnum):
    STARTED = "started"
    ALREADY_RUNNING = "already running"


class StopOutcome(enum.StrEnum):
    STOPPED = "stopped"  # the graceful signal was enough
    KILLED = "killed"  # needed SIGKILL
    NOT_RUNNING = "not running"


@dataclass(frozen=True)
class ServiceStatus:
    name: ServiceName
    state: ServiceState
    pid: int | None
    ports: tuple[int, ...]
    data_dir: Path
    log_file: Path


class Service(ABC):
    name: ServiceName
    graceful_signal: signal.Signals = signal.SIGTERM

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings

    # -- layout ---------------------------------------------------------------------------------
    @property
    def home(self) -> Path:
        return self.settings.state_dir / self.name.value

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_file(self) -> Path:
        return self.settings.logs_dir / f"{self.name.value}.log"

    @property
    def pidfile(self) -> PidFile:
        return PidFile(self.settings.pids_dir / f"{self.name.value}.pid")

    # -- what each service defines ------------------------------------------------------------------
    @property
    @abstractmethod
    def ports(self) -> tuple[int, ...]:
        """Every TCP port the service listens on (the first is the client port)."""

    @abstractmethod
    def cmdline_markers(self) -> tuple[str, ...]:
        """Substrings of /proc/<pid>/cmdline that identify *this* stack's process."""

    @abstractmethod
    def prepare(self) -> None:
        """Check binaries, create or format the data directory, write config files. Idempotent."""

    @abstractmethod
    def argv(self) -> list[str]: ...

    @abstractmethod
    def probe(self) -> None:
        """Run a real query against the service; raise when it does not answer."""

    def run_as(self) -> str | None:
        return None

    def env(self) -> dict[str, str] | None:
        return None

    def after_ready(self) -> None:
        """Idempotent setup that needs the running service (databases, users)."""
        return None

    # -- lifecycle -------------------------------------------------------------------------------
    def running_pid(self) -> int | None:
        return self.pidfile.running_pid(self.cmdline_markers())

    def status(self) -> ServiceStatus:
        pid = self.running_pid()
        return ServiceStatus(
            name=self.name,
            state=ServiceState.RUNNING if pid is not None else ServiceState.STOPPED,
            pid=pid,
            ports=self.ports,
            data_dir=self.data_dir,
            log_file=self.log_file,
        )

    def launch(self) -> tuple[StartOutcome, int]:
        """Start the process unless ours already runs; does not wait for it to answer."""
        pid = self.running_pid()
        if pid is not None:
            return StartOutcome.ALREADY_RUNNING, pid
        busy = [port for port in self.ports if port_open(port)]
        if busy:
            raise DevStackError(
                f"{self.name}: port(s) {', '.join(map(str, busy))} already in use by a process that "
                f"is not this stack's {self.name} (state dir {self.settings.state_dir}); stop it or "
                f"choose other ports (--{self.name}-port)"
            )
        self.prepare()
        pid = start_detached(
            self.argv(), self.log_file, self.pidfile, user=self.run_as(), env=self.env(), cwd=self.home
        )
        return StartOutcome.STARTED, pid

    def wait(self, pid: int) -> None:
        """Wait until the service answers a real query, then run `after_ready`.

        A service that we just started and that fails to come up is stopped again, so a failed
        `up` leaves no half-started process behind.
        """
        try:
            wait_ready(self.name.value, pid, self.probe, self.log_file, self.settings.start_timeout)
            self.after_ready()
        except BaseException:
            self._stop_pid(pid)
            raise

    def stop(self) -> StopOutcome:
        pid = self.running_pid()
        outcome = StopOutcome.NOT_RUNNING if pid is None else self._stop_pid(pid)
        still_open = wait_ports_closed(self.ports)
        if still_open:
            raise DevStackError(
                f"{self.name}: port(s) {', '.join(map(str, still_open))} still open after stopping; "
                f"another program listens there"
            )
        return outcome

    def _stop_pid(self, pid: int) -> StopOutcome:
        graceful = stop_pid(pid, self.graceful_signal, self.settings.stop_timeout)
        self.pidfile.remove()
        return StopOutcome.STOPPED if graceful else StopOutcome.KILLED
