"""A throwaway MariaDB on its own loopback port, for tests that need server settings the shared dev
stack must not be given (a binlog off or in STATEMENT format, TLS required, ...).

It is the dev stack's own MariaDB service (same install, accounts and binlog settings) with extra
server options appended; mariadbd lets a later option override an earlier one, so ``--skip-log-bin``
or ``--binlog-format=STATEMENT`` undo the stack's defaults. Start-up takes about a second::

    with PrivateMariaDb(tmp_path / "db", ["--binlog-format=STATEMENT"]) as server:
        conn = server.connection()       # the same users and passwords as the dev stack's MariaDB

A replica for failover tests: a second one with its own ``--server-id``, made a GTID replica of the
first (``replicate_from``), and later promoted (``promote``)::

    with PrivateMariaDb(a, port=3340) as primary, PrivateMariaDb(b, ["--server-id=2"], 3341) as replica:
        replica.replicate_from(primary)
        ...
        replica.wait_for_gtids(primary)  # has applied everything the primary wrote
        replica.promote()                # STOP SLAVE, RESET SLAVE ALL, read_only OFF
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from cdc.devstack.connections import MariaDbConnection
from cdc.devstack.mariadb import MariaDb
from cdc.devstack.private_server import PrivateServer, free_loopback_port
from cdc.devstack.settings import LOOPBACK, ServiceName, StackSettings

__all__ = ["PrivateMariaDb", "free_loopback_port"]

# Small enough that several private servers next to the shared stack do not crowd a 2-core machine.
_LIGHT_OPTIONS: tuple[str, ...] = ("--innodb-buffer-pool-size=32M", "--innodb-log-file-size=8M")


class _Service(MariaDb):
    def __init__(self, settings: StackSettings, options: Sequence[str]) -> None:
        super().__init__(settings)
        self._options = tuple(options)

    def argv(self) -> list[str]:
        return [*super().argv(), *_LIGHT_OPTIONS, *self._options]


class PrivateMariaDb(PrivateServer):
    """Start on ``__enter__`` (fresh data directory under ``state_dir``); stop and delete on ``__exit__``."""

    def __init__(self, state_dir: Path, options: Sequence[str] = (), port: int | None = None) -> None:
        settings = StackSettings(
            state_dir=state_dir,
            mariadb_port=port or free_loopback_port(),
            services=(ServiceName.MARIADB,),
        )
        self._db = _Service(settings, options)
        super().__init__(state_dir, self._db)

    @property
    def port(self) -> int:
        return self._db.settings.mariadb_port

    @property
    def log_file(self) -> Path:
        return self._db.log_file

    def connection(self) -> MariaDbConnection:
        return self._db.connection()

    def gtid_binlog_pos(self) -> str:
        with self.connection().connect_root() as conn, conn.cursor() as cur:
            cur.execute("SELECT @@gtid_binlog_pos")
            row = cur.fetchone()
            return str(row[0] if row else "")

    def replicate_from(self, primary: PrivateMariaDb) -> None:
        """Make this server a GTID replica of ``primary`` (from the start of its binlog) and start it.

        Its binlog is rotated first, so that its binlog coordinates differ from the primary's, as a
        real replica's do (two fresh servers would otherwise write the same files, byte for byte)."""
        source = primary.connection()
        with self.connection().connect_root() as conn, conn.cursor() as cur:
            cur.execute("FLUSH BINARY LOGS")
            cur.execute("FLUSH BINARY LOGS")
            cur.execute(
                "CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER=%s, MASTER_PASSWORD=%s, "
                "MASTER_USE_GTID=slave_pos",
                (LOOPBACK, source.port, source.root_user, source.root_password),
            )
            cur.execute("START SLAVE")

    def wait_for_gtids(self, primary: PrivateMariaDb, timeout_s: float = 30.0) -> str:
        """Wait until this replica's binlog holds everything ``primary``'s does; returns that state."""
        target = primary.gtid_binlog_pos()
        deadline = time.monotonic() + timeout_s
        while True:
            with self.connection().connect_root() as conn, conn.cursor() as cur:
                cur.execute("SELECT @@gtid_binlog_pos, MASTER_GTID_WAIT(%s, 1)", (target,))
                row = cur.fetchone()
            if row is not None and int(row[1]) == 0:
                return target
            if time.monotonic() > deadline:
                raise TimeoutError(f"replica on port {self.port} did not reach {target} in {timeout_s:g}s")

    def promote(self) -> None:
        """Stop replicating and accept writes: what a failover does to the chosen replica."""
        with self.connection().connect_root() as conn, conn.cursor() as cur:
            cur.execute("STOP SLAVE")
            cur.execute("RESET SLAVE ALL")
            cur.execute("SET GLOBAL read_only = OFF")

    def stop(self) -> None:
        """Stopped is gone: a later start begins with a fresh data directory."""
        try:
            super().stop()
        finally:
            shutil.rmtree(self.state_dir, ignore_errors=True)
