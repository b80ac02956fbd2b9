"""`cdc status` of a PostgreSQL source: one connection for the server's WAL position, the slot, and
the captured tables.

Lag in bytes is WAL distance: from a checkpoint's (or a sink's) LSN to ``pg_current_wal_lsn()``. The
WAL is the whole cluster's, so writes to other databases count too, and a caught-up pipeline shows
the few bytes written since its last heartbeat rather than 0. The slot's own distance
(``confirmed_flush_lsn`` to the end) is the WAL the server keeps for this pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from cdc.config.models import PostgresSourceConfig
from cdc.core.errors import HeadwaterError, SourceUnavailable
from cdc.core.positions import RestartPoint
from cdc.core.table_filter import TableFilter

__all__ = ["PgSourceView", "SlotStatus", "format_lsn", "pg_source_address", "read_pg_source"]


def format_lsn(lsn: int) -> str:
    """PostgreSQL's own text form of an LSN: ``16/B374D848``."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def pg_source_address(config: PostgresSourceConfig) -> str:
    # what the embedded daemon records as its source in its state files (postgresql_embedded)
    return f"{config.host}:{config.port}/{config.database}"


@dataclass(frozen=True)
class SlotStatus:
    name: str
    exists: bool
    confirmed_flush_lsn: int = 0
    lost: bool = False  # invalidated by the server (wal_status 'lost')
    active: bool = False  # a walsender (a running `cdc run`) holds it

    def problem(self, pipeline_started: bool, when_needed: bool) -> str | None:
        """What a monitoring check must hear about the slot, if anything."""
        if when_needed:
            then = "the next `cdc run` bootstraps every table afresh (bootstrap.mode when_needed)"
        else:
            then = (
                "start the pipeline afresh with a bootstrap, or set bootstrap.mode when_needed "
                "(docs/postgresql.md, Errors)"
            )
        slot = f"replication slot {self.name!r}"
        if self.exists and self.lost:
            return f"{slot} was invalidated (wal_status lost): changes were lost; {then}"
        if not self.exists and pipeline_started:
            return f"{slot} does not exist: changes since the last checkpoint are lost; {then}"
        return None


@dataclass(frozen=True)
class PgSourceView:
    """What one connection to the PostgreSQL source tells `cdc status`."""

    current_lsn: int
    slot: SlotStatus
    tables: tuple[str, ...]

    def bytes_behind(self, point: RestartPoint) -> int | None:
        lsn = point.transaction.lsn
        if lsn is None:
            return None  # a MariaDB position: not this source's
        return max(0, self.current_lsn - lsn)

    @property
    def slot_bytes_behind(self) -> int | None:
        return max(0, self.current_lsn - self.slot.confirmed_flush_lsn) if self.slot.exists else None

    def to_json(self) -> dict[str, object]:
        return {
            "current_lsn": format_lsn(self.current_lsn),
            "slot": {
                "name": self.slot.name,
                "exists": self.slot.exists,
                "confirmed_flush_lsn": format_lsn(self.slot.confirmed_flush_lsn)
                if self.slot.exists
                else None,
                "lost": self.slot.lost,
                "active": self.slot.active,
                "bytes_behind": self.slot_bytes_behind,
            },
        }


def read_pg_source(config: PostgresSourceConfig, pipeline: str) -> PgSourceView:
    """Raises a HeadwaterError naming the server (never the password) when it cannot be read."""
    from cdc.sources.postgresql.server import captured_tables, connect, current_lsn, parse_lsn
    from cdc.sources.postgresql.source_config import pg_settings, slot_name

    settings = pg_settings(config)
    slot = slot_name(config, pipeline)
    accepts = TableFilter(tuple(config.tables), tuple(config.exclude_tables)).accepts
    try:
        with connect(settings) as conn:
            lsn = current_lsn(conn)
            row = conn.execute(
                "SELECT confirmed_flush_lsn::text, wal_status, active FROM pg_replication_slots"
                " WHERE slot_name = %s",
                (slot,),
            ).fetchone()
            tables = tuple(f"{ns}.{t}" for ns, t in captured_tables(conn) if accepts(ns, t))
    except HeadwaterError:
        raise
    except psycopg.Error as exc:
        raise SourceUnavailable(f"PostgreSQL source {settings!r} for `cdc status`: {exc}".strip()) from None
    if row is None:
        state = SlotStatus(slot, False)
    else:
        flush, wal_status, active = row
        state = SlotStatus(
            slot, True, parse_lsn(str(flush)) if flush else 0, wal_status == "lost", bool(active)
        )
    return PgSourceView(lsn, state, tables)
