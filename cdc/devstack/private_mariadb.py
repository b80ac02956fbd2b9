"""A throwaway MariaDB on its own loopback port, for tests that need server settings the shared dev
stack must not be given (a binlog off or in STATEMENT format, TLS required, ...).

It is the dev stack's own MariaDB service (same install, accounts and binlog settings) with extra
server options appended; mariadbd lets a later option override an earlier one, so ``--skip-log-bin``
or ``--binlog-format=STATEMENT`` undo the stack's defaults. Start-up takes about a second::

    with PrivateMariaDb(tmp_path / "db", ["--binlog-format=STATEMENT"]) as server:
        conn = server.connection()       # the same users and passwords as the dev stack's MariaDB
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from cdc.devstack.connections import MariaDbConnection
from cdc.devstack.mariadb import MariaDb
from cdc.devstack.settings import LOOPBACK, ServiceName, StackSettings

__all__ = ["PrivateMariaDb", "free_loopback_port"]

# Small enough that several private servers next to the shared stack do not crowd a 2-core machine.
_LIGHT_OPTIONS: tuple[str, ...] = ("--innodb-buffer-pool-size=32M", "--innodb-log-file-size=8M")


def free_loopback_port() -> int:
    """A TCP port nothing listens on right now (the kernel's choice, so two callers rarely collide)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


class _Service(MariaDb):
    def __init__(self, settings: StackSettings, options: Sequence[str]) -> None:
        super().__init__(settings)
        self._options = tuple(options)

    def argv(self) -> list[str]:
        return [*super().argv(), *_LIGHT_OPTIONS, *self._options]


class PrivateMariaDb:
    """Start on ``__enter__`` (fresh data directory under ``state_dir``); stop and delete on ``__exit__``."""

    def __init__(self, state_dir: Path, options: Sequence[str] = (), port: int | None = None) -> None:
        self.state_dir = state_dir
        settings = StackSettings(
            state_dir=state_dir,
            mariadb_port=port or free_loopback_port(),
            services=(ServiceName.MARIADB,),
        )
        self._service = _Service(settings, options)

    @property
    def port(self) -> int:
        return self._service.settings.mariadb_port

    @property
    def log_file(self) -> Path:
        return self._service.log_file

    def connection(self) -> MariaDbConnection:
        return self._service.connection()

    def start(self) -> None:
        _outcome, pid = self._service.launch()
        self._service.wait(pid)  # stops the process again if it does not come up

    def stop(self) -> None:
        try:
            self._service.stop()
        finally:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> PrivateMariaDb:
        try:
            self.start()
        except BaseException:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
