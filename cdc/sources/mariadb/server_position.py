"""Where a MariaDB server's binlog is now, and how far a position is behind it."""

from __future__ import annotations

from dataclasses import dataclass

import pymysql.cursors

from cdc.core.errors import SourceSettingsError
from cdc.core.positions import Gtid, Position, ReadContext, RestartPoint
from cdc.sources.mariadb.connection import ConnectionSettings, control
from cdc.sources.mariadb.failover import gtid_state_at
from cdc.sources.mariadb.table_filter import TableFilter

__all__ = [
    "ServerPosition",
    "binlog_files",
    "bytes_behind",
    "captured_tables",
    "current_restart_point",
    "read_captured_tables",
    "read_server_position",
    "server_position",
]


@dataclass(frozen=True, slots=True)
class ServerPosition:
    file: str  # the binlog file being written
    offset: int  # its end: where the next transaction will start
    gtid_state: str  # @@gtid_binlog_pos, e.g. "0-1-46" (one entry per domain)
    server_id: int
    domain_id: int

    @property
    def last_gtid(self) -> Gtid:
        """The server's last GTID in its own domain (0-0-0 on a server that never wrote one)."""
        entries = [Gtid.parse(e.strip()) for e in self.gtid_state.split(",") if e.strip()]
        own = [g for g in entries if g.domain == self.domain_id]
        return (own or entries or [Gtid(self.domain_id, 0, 0)])[-1]


def server_position(settings: ConnectionSettings) -> ServerPosition:
    with control(settings, "reading the binlog position (SHOW MASTER STATUS)") as cur:
        return read_server_position(cur, settings)


def read_server_position(cur: pymysql.cursors.Cursor, settings: ConnectionSettings) -> ServerPosition:
    """:func:`server_position` on a cursor of :func:`control` (one connection for several reads)."""
    cur.execute("SHOW MASTER STATUS")
    row = cur.fetchone()
    if row is None:
        raise SourceSettingsError(
            f"{settings.describe()} has no binary log (log_bin is OFF): start MariaDB with log_bin, "
            "binlog_format=ROW, binlog_row_image=FULL, binlog_row_metadata=FULL"
        )
    cur.execute("SELECT @@gtid_binlog_pos, @@server_id, @@gtid_domain_id")
    gtid_state, server_id, domain_id = cur.fetchone() or ("", 0, 0)
    return ServerPosition(str(row[0]), int(row[1]), str(gtid_state or ""), int(server_id), int(domain_id))


def binlog_files(cur: pymysql.cursors.Cursor) -> tuple[tuple[str, int], ...]:
    """The server's binlog files and their sizes, oldest first (SHOW BINARY LOGS)."""
    cur.execute("SHOW BINARY LOGS")
    return tuple((str(name), int(size)) for name, size, *_ in cur.fetchall())


def current_restart_point(settings: ConnectionSettings) -> RestartPoint:
    """A transaction boundary at the binlog's current end: the next transaction starts at or after it.

    Its GTID is the last one written before it (informative only: a boundary with no rows to skip is
    checked by binlog coordinates, not by GTID). It carries the server's id and the GTID state
    there, so that it can be resumed on a promoted replica too.
    """
    with control(settings, "reading the binlog position (SHOW MASTER STATUS)") as cur:
        now = read_server_position(cur, settings)
        state = gtid_state_at(cur, now.file, now.offset)
    context = None if state is None else ReadContext(now.server_id, state)
    return RestartPoint(Position(now.last_gtid, now.file, now.offset, 0, 0, context), 0)


def bytes_behind(settings: ConnectionSettings, file: str, offset: int) -> int | None:
    """Binlog bytes between (file, offset) and the server's end; None if that file is gone."""
    with control(settings, "listing the binlog files (SHOW BINARY LOGS)") as cur:
        logs = list(binlog_files(cur))
    names = [name for name, _ in logs]
    if file not in names:
        return None
    index = names.index(file)
    behind = logs[index][1] - offset
    behind += sum(size for _, size in logs[index + 1 :])
    return max(behind, 0)


def captured_tables(
    settings: ConnectionSettings, include: tuple[str, ...], exclude: tuple[str, ...]
) -> tuple[str, ...]:
    """The server's base tables that the include/exclude patterns select, as "db.table"."""
    with control(settings, "listing the captured tables") as cur:
        return read_captured_tables(cur, include, exclude)


def read_captured_tables(
    cur: pymysql.cursors.Cursor, include: tuple[str, ...], exclude: tuple[str, ...]
) -> tuple[str, ...]:
    """:func:`captured_tables` on a cursor of :func:`control`."""
    table_filter = TableFilter(include, exclude)
    cur.execute(
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
        "AND table_schema NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') "
        "ORDER BY table_schema, table_name"
    )
    return tuple(f"{db}.{t}" for db, t in cur.fetchall() if table_filter.accepts(str(db), str(t)))
