"""The stream decoder's rules for issue 8, on hand-built binlog events (no server).

The integration tests in tests/integration/test_source_semantics.py check the same rules against
MariaDB; these cover what a live server cannot be made to produce on demand: a heartbeat, a
non-transactional row inside a transactional group, the progress throttle, malformed inputs.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import pytest

from cdc.core import ChangeEvent, Op, RestartPoint, TransactionEnd
from cdc.core.errors import SourceProtocolError, SourceSettingsError
from cdc.core.events import SourceProgress, SourceRecord
from cdc.core.positions import Gtid, Position
from cdc.sources.mariadb import StreamDecoder, TableFilter
from cdc.sources.mariadb.binlog_format import EventType, FieldType

FILE = "mariadb-bin.000007"
FL_TRANSACTIONAL, FL_ALLOW_PARALLEL, FL_STANDALONE = 4, 8, 1


@dataclass
class Binlog:
    """Builds events for tables of two INT columns (id NOT NULL primary key, v NULL)."""

    events: list[bytes] = field(default_factory=list)
    offset: int = 4
    seq: int = 100
    table_ids: dict[str, int] = field(default_factory=dict)

    def _event(self, type_code: int, body: bytes) -> bytes:
        size = 19 + len(body)
        self.offset += size
        ev = struct.pack("<IBIIIH", 1_700_000_000, type_code, 1, size, self.offset, 0) + body
        self.events.append(ev)
        return ev

    def rotate(self) -> Binlog:
        self._event(EventType.ROTATE, struct.pack("<Q", 4) + FILE.encode())
        return self

    def gtid(self, flags: int = FL_TRANSACTIONAL | FL_ALLOW_PARALLEL) -> Binlog:
        self.seq += 1
        self._event(EventType.GTID, struct.pack("<QIB", self.seq, 0, flags) + bytes(6))
        return self

    def table_map(self, table: str) -> Binlog:
        table_id = self.table_ids.setdefault(table, 70 + len(self.table_ids))
        body = table_id.to_bytes(6, "little") + b"\x01\x00"
        body += bytes([1]) + b"d\x00" + bytes([len(table)]) + table.encode() + b"\x00"
        body += bytes([2, FieldType.LONG, FieldType.LONG]) + bytes([0])  # 2 columns, no metadata
        body += bytes([0b10])  # v is nullable
        names = b"\x02id\x01v"
        body += bytes([4, len(names)]) + names  # COLUMN_NAME
        body += bytes([8, 1, 0])  # SIMPLE_PRIMARY_KEY: column 0
        self._event(EventType.TABLE_MAP, body)
        return self

    def _rows(self, type_code: int, table: str, images: list[tuple[int, int]], present: int = 0b11) -> Binlog:
        self.table_map(table)
        body = self.table_ids[table].to_bytes(6, "little") + b"\x01\x00" + bytes([2, present])
        if type_code == EventType.UPDATE_ROWS_V1:
            body += bytes([present])
        for image in images:
            body += b"\x00" + struct.pack("<ii", *image)
        self._event(type_code, body)
        return self

    def insert(self, table: str, *images: tuple[int, int]) -> Binlog:
        return self._rows(EventType.WRITE_ROWS_V1, table, list(images))

    def update(
        self, table: str, *pairs: tuple[tuple[int, int], tuple[int, int]], present: int = 0b11
    ) -> Binlog:
        return self._rows(EventType.UPDATE_ROWS_V1, table, [i for p in pairs for i in p], present)

    def query(self, sql: str, db: str = "d", thread: int = 9) -> Binlog:
        body = struct.pack("<IIBHH", thread, 0, len(db), 0, 0) + db.encode() + b"\x00" + sql.encode()
        self._event(EventType.QUERY, body)
        return self

    def xid(self) -> Binlog:
        self._event(EventType.XID, struct.pack("<Q", self.seq))
        return self

    def heartbeat(self) -> Binlog:
        ev = struct.pack("<IBIIIH", 0, EventType.HEARTBEAT, 1, 19 + len(FILE), self.offset, 0) + FILE.encode()
        self.events.append(ev)
        return self


def decode(binlog: Binlog, **kwargs: object) -> list[SourceRecord]:
    decoder = StreamDecoder(lambda _: "utf8mb4", table_filter=TableFilter(("d.t", "d.m")), **kwargs)  # type: ignore[arg-type]
    return list(decoder.records(binlog.events))


def rows(records: list[SourceRecord]) -> list[tuple[str, str, object, int]]:
    return [(r.op.value, r.table.table, r.key, r.position.row) for r in records if isinstance(r, ChangeEvent)]


def test_key_change_is_delete_then_create_with_exact_skips() -> None:
    b = Binlog().rotate().gtid().update("t", ((1, 5), (2, 5)), ((3, 5), (3, 6))).xid()
    records = decode(b)
    assert rows(records) == [("d", "t", (1,), 0), ("c", "t", (2,), 1), ("u", "t", (3,), 2)]
    delete, create, update = (r for r in records if isinstance(r, ChangeEvent))
    assert (
        delete.before == (1, 5) and delete.after is None and create.before is None and create.after == (2, 5)
    )
    for skip in (1, 2):
        resumed = decode(b, resume=RestartPoint(delete.position, skip))
        assert [r for r in resumed if isinstance(r, ChangeEvent)] == [create, update][skip - 1 :]


def test_partial_image_on_a_captured_table_is_refused_and_elsewhere_ignored() -> None:
    b = Binlog().rotate().gtid().update("other", ((1, 5), (1, 6)), present=0b01).xid()
    assert rows(decode(b)) == []
    b.gtid().update("t", ((1, 5), (1, 6)), present=0b01).xid()
    with pytest.raises(
        SourceSettingsError, match=r"d\.t: .*mariadb-bin\.000007:\d+ \(GTID 0-1-102\).*binlog_row_image=FULL"
    ):
        decode(b)


def test_statement_logged_dml_is_refused_unless_on_a_session_temporary_table() -> None:
    b = Binlog().rotate()
    b.gtid(FL_ALLOW_PARALLEL).query("CREATE TEMPORARY TABLE t (id INT)", thread=5).query("COMMIT")
    b.gtid().query("INSERT INTO t VALUES (1)", thread=5).xid()  # the session's own temporary t
    b.gtid().query("UPDATE other SET v = 1").xid()
    assert rows(decode(b)) == []
    b.gtid().query("INSERT INTO t VALUES (1)", thread=6).xid()  # another session: the real d.t
    with pytest.raises(SourceSettingsError, match=r"d\.t: an INSERT statement at .*binlog_format=ROW"):
        decode(b)


def test_savepoint_rollback_keeps_non_transactional_rows_and_numbers_rows_stably() -> None:
    b = Binlog().rotate().gtid(FL_ALLOW_PARALLEL)  # no FL_TRANSACTIONAL: the transaction wrote MyISAM
    b.insert("t", (1, 1)).query("SAVEPOINT `a`").insert("t", (2, 2)).insert("m", (9, 9))
    b.query("SAVEPOINT `b`").insert("t", (3, 3)).query("ROLLBACK TO `a`").insert("t", (4, 4)).xid()
    records = decode(b, transactional_of=lambda db, table: table != "m")
    assert rows(records) == [("c", "t", (1,), 0), ("c", "m", (9,), 2), ("c", "t", (4,), 4)]
    end = records[-1]
    assert isinstance(end, TransactionEnd) and end.last_position.row == 4
    # the default counts every table as transactional
    assert rows(decode(b)) == [("c", "t", (1,), 0), ("c", "t", (4,), 4)]
    second = records[1]
    assert isinstance(second, ChangeEvent)
    resumed = decode(
        b, transactional_of=lambda db, table: table != "m", resume=RestartPoint.after(second.position)
    )
    assert rows(resumed) == [("c", "t", (4,), 4)]


def test_a_group_ending_in_rollback_keeps_only_non_transactional_rows() -> None:
    b = Binlog().rotate().gtid(FL_ALLOW_PARALLEL).insert("m", (1, 1)).insert("t", (2, 2)).query("ROLLBACK")
    b.gtid().insert("t", (3, 3)).xid()
    records = decode(b, transactional_of=lambda db, table: table != "m")
    assert rows(records) == [("c", "m", (1,), 0), ("c", "t", (3,), 0)]
    assert [type(r).__name__ for r in records] == [
        "ChangeEvent",
        "TransactionEnd",
        "ChangeEvent",
        "TransactionEnd",
    ]


def test_a_rollback_in_a_transactional_group_that_undoes_emitted_rows_stops() -> None:
    b = Binlog().rotate().gtid().query("SAVEPOINT `a`").insert("t", (1, 1)).query("ROLLBACK TO `a`").xid()
    with pytest.raises(SourceProtocolError, match="undoes row changes already emitted"):
        decode(b)


def test_foreign_transactions_give_throttled_progress_at_the_next_event() -> None:
    b = Binlog().rotate().gtid().insert("t", (1, 1)).xid()
    for i in range(3):
        b.gtid().insert("other", (i, i)).xid()
    records = decode(b)
    progress = [r for r in records if isinstance(r, SourceProgress)]
    # one per 0.5 s, and the newest one withheld is sent when the stream ends
    assert len(progress) == 2
    point = progress[0].restart
    assert point.skip_rows == 0 and point.transaction.gtid == Gtid(0, 1, 102)
    first_foreign_xid = b.events[8]
    assert point.transaction.offset == struct.unpack_from("<I", first_foreign_xid, 13)[0]
    assert progress[1].restart.transaction.gtid == Gtid(0, 1, 104)
    assert progress[1].restart.transaction.offset == b.offset
    assert records[-1] is progress[1]
    assert len([r for r in decode(b, progress_interval_s=0.0) if isinstance(r, SourceProgress)]) == 3


def test_a_withheld_progress_is_dropped_once_a_captured_transaction_follows() -> None:
    b = Binlog().rotate().gtid().insert("t", (1, 1)).xid()
    b.gtid().insert("other", (1, 1)).xid().gtid().insert("other", (2, 2)).xid()
    b.gtid().insert("t", (2, 2)).xid()
    records = decode(b)
    assert [type(r).__name__ for r in records][-2:] == ["ChangeEvent", "TransactionEnd"]


def test_heartbeat_outside_a_transaction_is_progress_at_the_servers_position() -> None:
    b = Binlog().rotate().heartbeat()  # no GTID seen yet: nothing to label a position with
    b.gtid().insert("t", (1, 1)).xid().heartbeat()
    end_of_first = b.offset
    b.gtid().insert("t", (2, 2)).heartbeat().xid()  # inside a transaction: no boundary
    records = decode(b)
    beats = [r for r in records if isinstance(r, SourceProgress)]
    assert [r.restart for r in beats] == [RestartPoint(Position(Gtid(0, 1, 101), FILE, end_of_first))]
    resumed = decode(Binlog().rotate(), resume=beats[0].restart)
    assert resumed == []


def test_truncate_schema_is_the_newest_table_map_or_the_empty_one() -> None:
    b = Binlog().rotate().gtid().insert("t", (1, 1)).xid().gtid(FL_STANDALONE).query("TRUNCATE TABLE t")
    records = decode(b)
    insert, truncate = (r for r in records if isinstance(r, ChangeEvent))
    assert truncate.op is Op.TRUNCATE and truncate.schema == insert.schema
    alone = Binlog(offset=b.offset, seq=b.seq).rotate().gtid(FL_STANDALONE).query("TRUNCATE TABLE t")
    first, again = (next(r for r in decode(alone) if isinstance(r, ChangeEvent)) for _ in range(2))
    assert first.schema.columns == () and first.schema.primary_key == () and first.schema == again.schema


def test_a_held_transaction_past_the_limit_streams_on_and_a_late_rollback_stops() -> None:
    b = Binlog().rotate().gtid(FL_ALLOW_PARALLEL).query("SAVEPOINT `a`").insert("t", (1, 1), (2, 2), (3, 3))
    complete = Binlog(events=list(b.events), offset=b.offset, seq=b.seq).insert("t", (4, 4)).xid()
    assert [key for _, _, key, _ in rows(decode(complete, hold_limit=2))] == [(1,), (2,), (3,), (4,)]
    b.query("ROLLBACK TO `a`").xid()
    with pytest.raises(SourceProtocolError, match="hold limit"):
        decode(b, hold_limit=2)
    assert rows(decode(b)) == []  # within the limit the rollback is honoured


def test_create_select_is_a_write_only_when_logged_as_a_statement() -> None:
    from cdc.sources.mariadb.ddl import StatementKind, classify

    kinds = [s.kind for s in classify("CREATE TABLE d.x SELECT * FROM d.y", "d")]
    assert kinds == [StatementKind.CREATE, StatementKind.WRITE]
    row_format = "CREATE TABLE `x` (`select` int(11) DEFAULT NULL COMMENT 'select me')"
    assert [s.kind for s in classify(row_format, "d")] == [StatementKind.CREATE]


def test_a_caught_up_reader_sends_the_withheld_progress_at_once() -> None:
    # bootspeed: a bootstrap chunk waits until the stream has passed its view's boundary; when the
    # last transaction before it touched only other tables and the source then fell quiet, its
    # progress was withheld until the next transaction or heartbeat (seconds per chunk)
    b = Binlog().rotate().gtid().insert("t", (1, 1)).xid()
    for i in range(3):
        b.gtid().insert("other", (i, i)).xid()
    decoder = StreamDecoder(
        lambda _: "utf8mb4", table_filter=TableFilter(("d.t",)), input_ready=lambda: False
    )
    records: list[SourceRecord] = []
    for record in decoder.records(b.events):
        records.append(record)
        if isinstance(record, SourceProgress):
            # sent as the foreign transaction ends, not when the events run out
            assert record.restart.transaction.offset <= b.offset
    progress = [r for r in records if isinstance(r, SourceProgress)]
    assert [p.restart.transaction.gtid for p in progress] == [
        Gtid(0, 1, 102),
        Gtid(0, 1, 103),
        Gtid(0, 1, 104),
    ]
    busy = StreamDecoder(lambda _: "utf8mb4", table_filter=TableFilter(("d.t",)), input_ready=lambda: True)
    assert len([r for r in busy.records(b.events) if isinstance(r, SourceProgress)]) == 2  # throttled
