"""The dev stack as a whole: bring the chosen services up together, down together, report status.

Python API (what the CLI and the tests use)::

    stack = DevStack(StackSettings(state_dir=..., mariadb_port=..., ...))
    report = stack.up()          # idempotent; returns UpReport with .connections
    stack.status()               # list[ServiceStatus]
    stack.down()                 # graceful, then forced; no process and no listening port left
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cdc.devstack.connections import StackConnections
from cdc.devstack.kafka import Kafka
from cdc.devstack.mariadb import MariaDb
from cdc.devstack.pgsource import PgSource
from cdc.devstack.postgres import Postgres
from cdc.devstack.process import DevStackError
from cdc.devstack.service import Service, ServiceStatus, StartOutcome, StopOutcome
from cdc.devstack.settings import ServiceName, StackSettings

__all__ = ["DevStack", "DownReport", "StackSettings", "UpReport"]


@dataclass(frozen=True)
class UpReport:
    started: dict[ServiceName, tuple[StartOutcome, int]]  # outcome and PID per service
    connections: StackConnections
    connections_file: Path


@dataclass(frozen=True)
class DownReport:
    stopped: dict[ServiceName, StopOutcome]


class DevStack:
    def __init__(self, settings: StackSettings | None = None) -> None:
        self.settings = settings or StackSettings()
        self.mariadb = MariaDb(self.settings)
        self.kafka = Kafka(self.settings)
        self.postgres = Postgres(self.settings)
        self.pgsource = PgSource(self.settings)

    @property
    def all_services(self) -> tuple[Service, ...]:
        return (self.mariadb, self.kafka, self.postgres, self.pgsource)

    @property
    def services(self) -> tuple[Service, ...]:
        """The services this stack manages (the `--services` subset)."""
        return tuple(s for s in self.all_services if s.name in self.settings.services)

    def connections(self) -> StackConnections:
        return StackConnections(
            mariadb=self.mariadb.connection(),
            kafka=self.kafka.connection(),
            postgres=self.postgres.connection(),
            pgsource=self.pgsource.connection(),
        )

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One `up`/`down` at a time per state dir (a test session and a shell may race)."""
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.settings.state_dir / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def up(self) -> UpReport:
        """Start what is not running, wait until every service answers a real query.

        Services start concurrently (the Kafka JVM is the slow one); a service that is already
        running is left alone. On failure the services this call started are stopped again.
        """
        with self._locked():
            self.settings.state_dir.chmod(0o755)  # PostgreSQL runs as its own user and must get in
            started: dict[ServiceName, tuple[StartOutcome, int]] = {}
            try:
                for service in self.services:
                    started[service.name] = service.launch()
                for service in self.services:
                    service.wait(started[service.name][1])
            except BaseException:
                for service in self.services:
                    outcome = started.get(service.name)
                    if outcome is not None and outcome[0] is StartOutcome.STARTED:
                        service.stop()
                raise
            connections = self.connections()
            path = connections.write(self.settings.state_dir)
            return UpReport(started=started, connections=connections, connections_file=path)

    def down(self) -> DownReport:
        """Stop every managed service by PID (in parallel) and check that its ports are closed."""
        with self._locked(), ThreadPoolExecutor(max_workers=len(self.all_services)) as pool:
            futures = {s.name: pool.submit(s.stop) for s in self.services}
            errors: list[str] = []
            stopped: dict[ServiceName, StopOutcome] = {}
            for name, future in futures.items():
                try:
                    stopped[name] = future.result()
                except DevStackError as exc:
                    errors.append(str(exc))
            if errors:
                raise DevStackError("; ".join(errors))
            return DownReport(stopped=stopped)

    def status(self) -> list[ServiceStatus]:
        return [service.status() for service in self.services]

    def is_up(self) -> bool:
        return all(status.pid is not None for status in self.status())
