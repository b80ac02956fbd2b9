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

import tempfile
from pathlib import Path

from cdc.devstack.connections import PgSourceConnection
from cdc.devstack.pgsource import PgSource
from cdc.devstack.private_server import PrivateServer, free_loopback_port
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


class PrivatePgSource(PrivateServer):
    def __init__(self, port: int | None = None, settings: dict[str, str] | None = None) -> None:
        """``settings``: server settings over the stack's (PGSOURCE_SETTINGS), this cluster only."""
        state_dir = Path(tempfile.mkdtemp(prefix="hw-pgsrc-"))
        state_dir.chmod(0o755)
        stack = StackSettings(
            state_dir=state_dir,
            pgsource_port=port or free_loopback_port(),
            services=(ServiceName.PGSOURCE,),
        )
        self._pg = _Service(stack, dict(settings or {}))
        super().__init__(state_dir, self._pg)

    @property
    def port(self) -> int:
        return self._pg.port

    def connection(self) -> PgSourceConnection:
        return self._pg.connection()

    def _prepare(self) -> None:
        # the cluster runs as the `postgres` system user when the caller is root
        self.state_dir.chmod(0o755)
        self._pg.settings.logs_dir.mkdir(parents=True, exist_ok=True)
        self._pg.settings.pids_dir.mkdir(parents=True, exist_ok=True)

    def restart(self, settings: dict[str, str] | None = None) -> None:
        """``settings``: server settings changed from now on (over the earlier ones)."""
        self.stop()
        if settings:
            self._pg.update(settings)
        self.start()
