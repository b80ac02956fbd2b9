"""The replication connection: psycopg2's LogicalReplicationConnection reading pgoutput.

psycopg 3 has no replication protocol API (psycopg#71); psycopg2's is the mature Python transport
(benchmarks/pg_capture_bench.py measures it beside pg_recvlogical). Everything on this connection
happens on the reading thread: decoding, catalog lookups and heartbeats on a second (plain)
connection, and the slot's acknowledgements, whose LSN the committing thread hands over in ``Acks``.

The slot is acknowledged one byte below the LSN of the last checkpoint Kafka or the sinks committed:
the slot then keeps every transaction that committed at or after it, and a WAL record never starts
there (records are 8-byte aligned), so the transport never mistakes it for a message it received.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import cast

import psycopg
import psycopg2
import psycopg2.errors
import psycopg2.extras

from cdc.core.errors import SourceAccessDenied, SourceUnavailable, StreamGap
from cdc.core.events import SourceRecord
from cdc.core.positions import RestartPoint, lsn_position
from cdc.core.table_filter import TableFilter
from cdc.sources.postgresql.pgoutput import PgoutputDecoder
from cdc.sources.postgresql.server import (
    RECOVER,
    PgSettings,
    catalog_columns,
    connect,
    emit_heartbeat,
    parse_lsn,
)
from cdc.sources.postgresql.snapshot import snapshot_records

__all__ = ["SESSION_OPTIONS", "Acks", "PgLogicalReader", "ReaderOptions", "is_snapshot_pending"]

log = logging.getLogger("cdc.source.postgresql")

# fixes the text form of values (see values.py), whatever the server's defaults
SESSION_OPTIONS = "-c DateStyle=ISO -c IntervalStyle=iso_8601 -c TimeZone=UTC -c extra_float_digits=3"


def is_snapshot_pending(start: RestartPoint) -> bool:
    """The checkpoint a bootstrapping pipeline's first start commits: an anchor with nothing after
    it. Once the snapshot's rows are committed, the checkpoint is after them (skip > 0) or at the
    slot's consistent point."""
    return start.transaction.is_snapshot_anchor and start.skip_rows == 0


class Acks:
    """The LSN of the last checkpoint durably committed (by Kafka or every sink), across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lsn = 0

    def committed(self, lsn: int | None) -> None:
        if lsn is None:
            return
        with self._lock:
            if lsn > self._lsn:
                self._lsn = lsn

    @property
    def lsn(self) -> int:
        with self._lock:
            return self._lsn


@dataclass(frozen=True)
class ReaderOptions:
    settings: PgSettings
    slot: str
    publication: str
    tables: TableFilter
    heartbeat_s: float = 5.0
    blocking: bool = True  # False: end once caught up with the server's WAL at the start
    # how soon a commit is acknowledged to the slot: one small message when there is a new one, so
    # the WAL it frees and `cdc status` follow the commits closely
    feedback_s: float = 0.25


class PgLogicalReader:
    def __init__(self, options: ReaderOptions, acks: Acks) -> None:
        self._options = options
        self._acks = acks
        self._closed = threading.Event()
        self._repl: psycopg2.extensions.connection | None = None

    def close(self) -> None:
        self._closed.set()

    def records(self, start: RestartPoint, *, afresh: bool = False) -> Iterator[SourceRecord]:
        """``afresh``: the slot lost changes after ``start`` (when_needed): a new slot, and every
        table truncated then read again in its snapshot, before the stream goes on from it."""
        opts = self._options
        self._closed.clear()
        ctl = connect(opts.settings)
        try:
            repl = self._open_replication()
            try:
                if afresh or is_snapshot_pending(start):
                    start = yield from self._snapshot(ctl, repl, afresh)
                yield from self._stream(ctl, repl, start)
            finally:
                repl.close()
        finally:
            ctl.close()

    def _snapshot(
        self,
        ctl: psycopg.Connection[tuple[object, ...]],
        repl: psycopg2.extensions.connection,
        afresh: bool = False,
    ) -> Generator[SourceRecord, None, RestartPoint]:
        """The first start's bootstrap (snapshot.py): a new slot with an exported snapshot, the
        tables read in it, then the stream from the slot's consistent point."""
        opts = self._options
        # "snapshot pending": nothing of any slot by this name was committed; start it afresh
        busy = ctl.execute(
            "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (opts.slot,)
        ).fetchone()
        if busy is not None and busy[0]:
            # a killed predecessor's walsender lingers until the server notices: try again soon
            raise SourceUnavailable(
                f"replication slot {opts.slot!r} is still in use by an earlier connection"
            )
        if busy is not None:
            ctl.execute("SELECT pg_drop_replication_slot(%s)", (opts.slot,))
        cur = repl.cursor()
        try:
            cur.execute(f'CREATE_REPLICATION_SLOT "{opts.slot}" LOGICAL pgoutput EXPORT_SNAPSHOT')
            row = cur.fetchone()
        except psycopg2.errors.DuplicateObject:
            raise SourceUnavailable(
                f"replication slot {opts.slot!r} was created meanwhile; trying again"
            ) from None
        except psycopg2.OperationalError as exc:
            raise SourceUnavailable(f"creating replication slot {opts.slot!r}: {str(exc).strip()}") from None
        except psycopg2.Error as exc:
            raise SourceAccessDenied(f"creating replication slot {opts.slot!r}: {str(exc).strip()}") from None
        assert row is not None
        consistent = parse_lsn(str(row[1]))
        log.info("bootstrap: slot %s created at %s; reading the tables in its snapshot", opts.slot, row[1])
        yield from snapshot_records(
            opts.settings, SESSION_OPTIONS, str(row[2]), consistent, opts.tables, truncate_first=afresh
        )
        # the snapshot's transaction is over, the exported snapshot with it; the stream follows on
        return RestartPoint(lsn_position(consistent, 0, 0))

    def _open_replication(self) -> psycopg2.extensions.connection:
        s = self._options.settings
        try:
            return psycopg2.connect(
                host=s.host,
                port=s.port,
                user=s.user,
                password=s.password,
                dbname=s.database,
                connect_timeout=max(1, int(s.connect_timeout_s)),
                options=SESSION_OPTIONS,
                client_encoding="UTF8",
                connection_factory=psycopg2.extras.LogicalReplicationConnection,
            )
        except psycopg2.OperationalError as exc:
            raise SourceUnavailable(
                f"PostgreSQL replication connection to {s!r}: {str(exc).strip()}"
            ) from None

    def _stream(
        self,
        ctl: psycopg.Connection[tuple[object, ...]],
        repl: psycopg2.extensions.connection,
        start: RestartPoint,
    ) -> Iterator[SourceRecord]:
        opts = self._options
        cur = cast(psycopg2.extras.ReplicationCursor, repl.cursor())
        try:
            cur.start_replication(
                slot_name=opts.slot,
                decode=False,
                start_lsn=0,  # the slot's confirmed_flush_lsn; the decoder drops what precedes `start`
                status_interval=10,
                options={"proto_version": "1", "publication_names": opts.publication, "messages": "true"},
            )
        except psycopg2.errors.UndefinedObject as exc:
            raise StreamGap(f"replication slot {opts.slot!r}: {str(exc).strip()}; {RECOVER}") from None
        except psycopg2.errors.ObjectNotInPrerequisiteState as exc:
            raise StreamGap(
                f"replication slot {opts.slot!r}: {str(exc).strip()}; drop it; {RECOVER}"
            ) from None
        except psycopg2.OperationalError as exc:
            raise SourceUnavailable(
                f"starting replication on slot {opts.slot!r}: {str(exc).strip()}"
            ) from None
        decoder = PgoutputDecoder(opts.tables, lambda relid: catalog_columns(ctl, relid), start)
        start_lsn = start.transaction.lsn or 0
        self._acks.committed(start_lsn)  # the checkpoint we start from is committed
        end_lsn = None if opts.blocking else emit_heartbeat(ctl)
        acked = 0
        next_feedback = 0.0
        next_heartbeat = time.monotonic() + opts.heartbeat_s
        try:
            while not self._closed.is_set():
                msg = cur.read_message()
                now = time.monotonic()
                if now >= next_feedback:
                    lsn = self._acks.lsn
                    if lsn > acked:
                        cur.send_feedback(flush_lsn=lsn - 1, force=True)  # type: ignore[no-untyped-call]
                        acked = lsn
                    next_feedback = now + opts.feedback_s
                if msg is None:
                    if end_lsn is not None and decoder.last_lsn >= end_lsn and not decoder.in_transaction:
                        cur.send_feedback(flush_lsn=max(self._acks.lsn - 1, 0), force=True)  # type: ignore[no-untyped-call]
                        return
                    if now >= next_heartbeat:
                        emit_heartbeat(ctl)  # keeps the slot moving while the captured tables are idle
                        next_heartbeat = now + opts.heartbeat_s
                    select.select([repl.fileno()], [], [], 0.2)
                    continue
                records = decoder.feed(msg.payload)
                if records:
                    yield from records
                if end_lsn is not None and decoder.last_lsn >= end_lsn and not decoder.in_transaction:
                    return
        except (psycopg2.OperationalError, psycopg.OperationalError) as exc:
            # the server went away (restart, network): the supervisor retries from the checkpoint
            raise SourceUnavailable(
                f"PostgreSQL replication stream on slot {opts.slot!r}: {str(exc).strip()}"
            ) from None
