"""A throwaway PostgreSQL source cluster on its own loopback port, for tests that restart it (the
shared dev stack's servers are never restarted by tests)::

    with PrivatePgSource() as server:          # initdb + start: a few seconds
        conn = server.connection()             # the same roles and passwords as the stack's pgsource
        server.restart()                       # fast shutdown, start again, wait until it answers
        server.restart({"max_slot_wal_keep_size": "1MB"})   # ... with these settings from now on

    PrivatePgSource(settings={"max_slot_wal_keep_size": "1MB"})   # other server settings

Its state directory is a fresh temporary directory that the ``postgres`` system user can reach (the
cluster runs as that user when the caller is root); it is deleted on exit.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from cdc.devstack.connections import PgSourceConnection
from cdc.devstack.pgsource import PgSource
from cdc.devstack.private_mariadb import free_loopback_port
from cdc.devstack.settings import ServiceName, StackSettings

__all__ = ["PrivatePgSource"]


class _Service(PgSource):
    def __init__(self, settings: StackSettings, overrides: dict[str, str]) -> None:
        super().__init__(settings)
        self._overrides = overrides

    def server_settings(self) -> dict[str, str]:
        return {**super().server_settings(), **self._overrides}

    def update(self, overrides: dict[str, str]) -> None:
        self._overrides.update(overrides)


class PrivatePgSource:
    def __init__(self, port: int | None = None, settings: dict[str, str] | None = None) -> None:
        """``settings``: server settings over the stack's (PGSOURCE_SETTINGS), this cluster only."""
        self.state_dir = Path(tempfile.mkdtemp(prefix="hw-pgsrc-"))
        self.state_dir.chmod(0o755)
        stack = StackSettings(
            state_dir=self.state_dir,
            pgsource_port=port or free_loopback_port(),
            services=(ServiceName.PGSOURCE,),
        )
        self._service = _Service(stack, dict(settings or {}))

    @property
    def port(self) -> int:
        return self._service.port

    def connection(self) -> PgSourceConnection:
        return self._service.connection()

    def start(self) -> None:
        self.state_dir.chmod(0o755)
        self._service.settings.logs_dir.mkdir(parents=True, exist_ok=True)
        self._service.settings.pids_dir.mkdir(parents=True, exist_ok=True)
        _outcome, pid = self._service.launch()
        self._service.wait(pid)

    def stop(self) -> None:
        self._service.stop()

    def restart(self, settings: dict[str, str] | None = None) -> None:
        """``settings``: server settings changed from now on (over the earlier ones)."""
        self.stop()
        if settings:
            self._service.update(settings)
        self.start()

    def __enter__(self) -> PrivatePgSource:
        try:
            self.start()
        except BaseException:
            shutil.rmtree(self.state_dir, ignore_errors=True)
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.state_dir, ignore_errors=True)
