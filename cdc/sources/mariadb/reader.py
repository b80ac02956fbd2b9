"""The MariaDB binlog reader: connect as a replica, start somewhere, yield ordered records.

reader = MariaDbBinlogReader(ReaderConfig(settings, server_id=5401, tables=("wiki.*",)))
for record in reader.records(StartAt.restart(point)):   # or StartAt.current(), StartAt.gtid("0-1-42")
    ...
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from typing import cast

from cdc.core.errors import BinlogPurged, ConfigError, SourceSettingsError
from cdc.core.events import SourceRecord
from cdc.core.positions import GtidState, RestartPoint
from cdc.sources.mariadb.connection import BinlogConnection, ConnectionSettings, DumpStart, control
from cdc.sources.mariadb.failover import (
    GtidNotOnServer,
    ReadPlan,
    failover_plan,
    gtid_state_at,
    purged_message,
)
from cdc.sources.mariadb.row_decoder import DecoderOptions
from cdc.sources.mariadb.stream_decoder import StreamDecoder
from cdc.sources.mariadb.table_engines import is_transactional
from cdc.sources.mariadb.table_filter import TableFilter
from cdc.sources.mariadb.value_codecs import ZeroDatePolicy

__all__ = ["MariaDbBinlogReader", "ReaderConfig", "StartAt"]

log = logging.getLogger(__name__)

_EXTENDED = ("uuid", "inet4", "inet6")


@dataclass(frozen=True)
class ReaderConfig:
    connection: ConnectionSettings
    server_id: int  # this replica's id; must differ from the server's and from other replicas'
    tables: tuple[str, ...] = ("*.*",)
    exclude_tables: tuple[str, ...] = ()
    heartbeat_s: float | None = 30.0  # the server sends a heartbeat when idle this long
    blocking: bool = True  # False: stop at the current end of the binlog
    zero_dates: ZeroDatePolicy = ZeroDatePolicy.NULL

    def __post_init__(self) -> None:
        if not 1 <= self.server_id < 2**32:
            raise ConfigError(f"source.server_id must be in [1, 2^32), got {self.server_id}")


@dataclass(frozen=True, slots=True)
class StartAt:
    """Where to start: the server's current end, after a GTID state, a restart point, or raw binlog
    coordinates (which must be an event boundary, e.g. from SHOW MASTER STATUS)."""

    gtid_state: str | None = None
    restart: RestartPoint | None = None
    file: str | None = None
    offset: int = 4

    @classmethod
    def current(cls) -> StartAt:
        return cls()

    @classmethod
    def gtid(cls, state: str) -> StartAt:
        """After the transactions named by a MariaDB GTID state, e.g. ``"0-1-42"`` (MariaDB semantics)."""
        return cls(gtid_state=state)

    @classmethod
    def at(cls, restart: RestartPoint) -> StartAt:
        return cls(restart=restart)

    @classmethod
    def coordinates(cls, file: str, offset: int) -> StartAt:
        return cls(file=file, offset=offset)


class _Records(chain[SourceRecord]):
    """The records of a generator of runs of records (StreamDecoder.runs_from_batches): flattened
    in C, a record is a list iterator's step for the consumer; ``close()`` closes the generator
    (and with it the connection), as closing a generator of records did."""

    _runs: Iterator[Iterable[SourceRecord]]

    @classmethod
    def of(cls, runs: Iterator[Iterable[SourceRecord]]) -> _Records:
        # from_iterable makes an instance of the class it is called on (typeshed says chain)
        records = cast(_Records, cls.from_iterable(runs))
        records._runs = runs
        return records

    def close(self) -> None:
        close = getattr(self._runs, "close", None)
        if close is not None:
            close()


class MariaDbBinlogReader:
    def __init__(self, config: ReaderConfig) -> None:
        self._config = config
        self._conn: BinlogConnection | None = None
        self.decoder: StreamDecoder | None = None

    def _collations(self) -> dict[int, str]:
        with control(self._config.connection, "reading the server's collations") as cur:
            cur.execute("SELECT id, character_set_name FROM information_schema.collations")
            return {int(i): str(name) for i, name in cur.fetchall() if i is not None}

    def _extended_types(self, db: str, table: str) -> tuple[tuple[str, str], ...]:
        # Read when a table's TABLE_MAP is first compiled; a later ALTER produces a new TABLE_MAP and a
        # fresh lookup. Only tables with BINARY(4)/BINARY(16)-shaped columns get here.
        with control(self._config.connection, f"reading the column types of {db}.{table}") as cur:
            cur.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s",
                (db, table),
            )
            return tuple((str(n), str(t).lower()) for n, t in cur.fetchall() if str(t).lower() in _EXTENDED)

    def _transactional(self, db: str, table: str) -> bool:
        # asked only for tables written in a group that also wrote a non-transactional table
        with control(self._config.connection, f"reading the engine of {db}.{table}") as cur:
            return is_transactional(cur, db, table)

    def _plan(self, start: StartAt) -> tuple[DumpStart, ReadPlan]:
        """Where the dump starts, and the server, GTID state and era the positions are read in.

        A restart point read on another server (a failover: see failover.py) is resumed by its GTID
        state, in the next era; any other start by binlog coordinates, with the GTID state there
        (``BINLOG_GTID_POS``) tracked from it."""
        settings = self._config.connection
        with control(settings, "reading the server's id and GTID position") as cur:
            cur.execute("SELECT @@server_id, @@gtid_binlog_pos")
            server_id_, binlog_pos = cur.fetchone() or (0, "")
            server_id = int(server_id_)
            restart = start.restart
            if restart is not None:
                tx, context = restart.transaction, restart.context
                if context is not None and context.server_id != server_id:
                    plan = failover_plan(
                        restart, server_id, GtidState.parse(str(binlog_pos or "")), settings.describe()
                    )
                    log.warning(
                        "the source is another server than the restart point's (server_id %d, was %d): "
                        "resuming by GTID state %s, in era %d",
                        server_id,
                        context.server_id,
                        plan.gtid_state,
                        plan.era,
                    )
                    return DumpStart(gtid_state=str(plan.gtid_state)), plan
                dump = DumpStart(file=tx.file, offset=restart.binlog_offset)
                state = context.gtid_state if context else gtid_state_at(cur, dump.file, dump.offset)
                return dump, ReadPlan(server_id, state, tx.era)
            if start.gtid_state is not None:
                gtid_dump = DumpStart(gtid_state=start.gtid_state)
                return gtid_dump, ReadPlan(server_id, GtidState.parse(start.gtid_state), 0)
            if start.file is not None:
                dump = DumpStart(file=start.file, offset=start.offset)
            else:
                cur.execute("SHOW MASTER STATUS")
                row = cur.fetchone()
                if row is None:
                    raise SourceSettingsError(f"{settings.describe()} has no binary log (log_bin is OFF)")
                dump = DumpStart(file=str(row[0]), offset=int(str(row[1])))
            return dump, ReadPlan(server_id, gtid_state_at(cur, dump.file, dump.offset), 0)

    def records(self, start: StartAt) -> Iterator[SourceRecord]:
        """Connect and start the dump now (so ``StartAt.current()`` means the moment of this call);
        iterate the result to read."""
        cfg = self._config
        conn = BinlogConnection(
            cfg.connection, cfg.server_id, blocking=cfg.blocking, heartbeat_s=cfg.heartbeat_s
        )
        collations = self._collations()
        dump, plan = self._plan(start)
        decoder = StreamDecoder(
            collations.__getitem__,
            table_filter=TableFilter(cfg.tables, cfg.exclude_tables),
            options=DecoderOptions(cfg.zero_dates),
            extended_types_of=self._extended_types,
            transactional_of=self._transactional,
            resume=start.restart,
            era=plan.era,
            source_server_id=plan.server_id,
            gtid_state=plan.gtid_state,
            resume_by_gtid=plan.by_gtid,
            input_ready=conn.input_ready,
        )
        if dump.file:
            decoder.file = dump.file  # the server's first ROTATE confirms it
        self.decoder = decoder
        where = start.restart.to_string() if start.restart else dump.describe()
        try:
            conn.open(dump)
        except BinlogPurged as exc:
            raise self._purged(exc, start, plan, where) from exc
        self._conn = conn
        return _Records.of(self._stream(conn, decoder, start, plan, where))

    def _purged(self, exc: BinlogPurged, start: StartAt, plan: ReadPlan, where: str) -> Exception:
        if plan.by_gtid and start.restart is not None:
            server = self._config.connection.describe()
            return GtidNotOnServer(purged_message(start.restart, server, plan.server_id, exc.server_message))
        return BinlogPurged(where, exc.server_message)

    def _stream(
        self, conn: BinlogConnection, decoder: StreamDecoder, start: StartAt, plan: ReadPlan, where: str
    ) -> Iterator[Iterable[SourceRecord]]:
        try:
            yield from decoder.runs_from_batches(conn.event_batches())
        except BinlogPurged as exc:
            raise self._purged(exc, start, plan, where) from exc
        finally:
            conn.close()
            self._conn = None

    def input_ready(self) -> bool:
        """More of the binlog stream is waiting: read and not decoded yet, or in the socket (False
        when not reading)."""
        conn, decoder = self._conn, self.decoder
        return conn is not None and ((decoder is not None and decoder.holding()) or conn.input_ready())

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
