"""The compiled event loop (headwater_native.EventLoop, cdc/sources/mariadb/compiled_loop.py) gives
the Python path's records, on hand-built binlog events: the same classes and slot values (positions'
keys and read contexts included), whatever the batches the events are cut into, with rotates,
heartbeats, table version changes, other tables, other domains and resumes in the stream."""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass, field
from typing import Any

import pytest

from cdc.core import ChangeEvent, RestartPoint, TransactionEnd
from cdc.core.events import SourceProgress, SourceRecord
from cdc.core.positions import Gtid, GtidState, Position
from cdc.sources.mariadb import StreamDecoder, TableFilter
from cdc.sources.mariadb import stream_decoder as stream_decoder_module
from cdc.sources.mariadb.binlog_format import EventType, FieldType
from tests.unit.test_mariadb_stream_decoder import CHARSETS, EVENTS

FL_TRANSACTIONAL, FL_ALLOW_PARALLEL, FL_STANDALONE = 4, 8, 1


@dataclass
class Binlog:
    """Events for tables of INT columns (the first NOT NULL primary key, the others NULL)."""

    file: str = "mariadb-bin.000007"
    events: list[bytes] = field(default_factory=list)
    offset: int = 4
    seq: int = 100
    table_ids: dict[str, int] = field(default_factory=dict)
    columns: dict[str, int] = field(default_factory=dict)

    def _event(self, type_code: int, body: bytes, ts: int = 1_700_000_000) -> Binlog:
        size = 19 + len(body)
        self.offset += size
        self.events.append(struct.pack("<IBIIIH", ts, type_code, 1, size, self.offset, 0) + body)
        return self

    def rotate(self, file: str | None = None) -> Binlog:
        self.file = file or self.file
        self.offset = 4
        return self._event(EventType.ROTATE, struct.pack("<Q", 4) + self.file.encode())

    def gtid(self, flags: int = FL_TRANSACTIONAL | FL_ALLOW_PARALLEL, domain: int = 0) -> Binlog:
        self.seq += 1
        return self._event(EventType.GTID, struct.pack("<QIB", self.seq, domain, flags) + bytes(6))

    def alter(self, table: str, columns: int) -> Binlog:
        """The table's next version: a new table id (as the server gives after ALTER TABLE)."""
        self.table_ids[table] = max(self.table_ids.values(), default=69) + 1
        self.columns[table] = columns
        return self

    def table_map(self, table: str) -> Binlog:
        if table not in self.table_ids:
            self.alter(table, 2)
        n = self.columns[table]
        body = self.table_ids[table].to_bytes(6, "little") + b"\x01\x00"
        body += bytes([1]) + b"d\x00" + bytes([len(table)]) + table.encode() + b"\x00"
        body += bytes([n, *[FieldType.LONG] * n]) + bytes([0])  # no metadata
        nullable = sum(1 << i for i in range(1, n))
        body += nullable.to_bytes((n + 7) // 8, "little")
        names = b"\x02id" + b"".join(bytes([2]) + f"c{i}".encode() for i in range(1, n))
        body += bytes([4, len(names)]) + names  # COLUMN_NAME
        body += bytes([8, 1, 0])  # SIMPLE_PRIMARY_KEY: column 0
        return self._event(EventType.TABLE_MAP, body)

    def rows(
        self, type_code: int, table: str, images: list[tuple[int | None, ...]], v2: bool = False
    ) -> Binlog:
        self.table_map(table)
        n = self.columns[table]
        bitmap = ((1 << n) - 1).to_bytes((n + 7) // 8, "little")
        body = self.table_ids[table].to_bytes(6, "little") + b"\x01\x00"
        if v2:
            type_code += EventType.WRITE_ROWS_V2 - EventType.WRITE_ROWS_V1
            body += b"\x02\x00"  # no extra data: the length counts itself
        body += bytes([n]) + bitmap
        if type_code in EventType.UPDATES:
            body += bitmap
        for image in images:
            nulls = sum(1 << i for i, v in enumerate(image) if v is None)
            body += nulls.to_bytes((n + 7) // 8, "little")
            body += b"".join(struct.pack("<i", v) for v in image if v is not None)
        return self._event(type_code, body)

    def insert(self, table: str, *images: tuple[int | None, ...], v2: bool = False) -> Binlog:
        return self.rows(EventType.WRITE_ROWS_V1, table, list(images), v2)

    def delete(self, table: str, *images: tuple[int | None, ...]) -> Binlog:
        return self.rows(EventType.DELETE_ROWS_V1, table, list(images))

    def update(
        self, table: str, *pairs: tuple[tuple[int | None, ...], tuple[int | None, ...]], v2: bool = False
    ) -> Binlog:
        return self.rows(EventType.UPDATE_ROWS_V1, table, [i for p in pairs for i in p], v2)

    def query(self, sql: str, db: str = "d") -> Binlog:
        body = struct.pack("<IIBHH", 9, 0, len(db), 0, 0) + db.encode() + b"\x00" + sql.encode()
        return self._event(EventType.QUERY, body)

    def xid(self) -> Binlog:
        return self._event(EventType.XID, struct.pack("<Q", self.seq))

    def heartbeat(self) -> Binlog:
        body = self.file.encode()
        self.events.append(
            struct.pack("<IBIIIH", 0, EventType.HEARTBEAT, 1, 19 + len(body), self.offset, 0) + body
        )
        return self


def canon(value: object) -> object:
    """Everything a record carries, slots and types included (Position's cached key, the read context)."""
    if isinstance(value, SourceProgress):  # a heartbeat's carries the wall clock
        return ("SourceProgress", canon(value.restart))
    if isinstance(value, Position):
        return (
            "Position",
            value._key,
            canon(value.gtid),
            canon(value.file),
            canon(value.offset),
            canon(value.row),
            canon(value.era),
            canon(value.context),
        )
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, *(canon(getattr(value, f.name)) for f in dataclasses.fields(value)))
    if isinstance(value, tuple):
        return tuple(canon(v) for v in value)
    return (type(value).__name__, value)


class Spy:
    """Counts the records the compiled loop gave, and the transactions of other tables it took."""

    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self.records = 0
        self.foreign = 0

    def run(self, *args: Any) -> Any:
        result = self.loop.run(*args)
        self.records += len(result[1])
        self.foreign += result[4] is not None
        return result


def both(events: list[bytes], **kwargs: Any) -> tuple[list[SourceRecord], Spy]:
    """The two paths' records, asserted equal; and what the compiled loop took."""
    kwargs.setdefault("table_filter", TableFilter(("d.t", "d.u", "g.*")))
    kwargs.setdefault("progress_interval_s", 0.0)  # the throttle is the clock's, not the path's
    charset = CHARSETS.__getitem__
    python = StreamDecoder(charset, compiled_loop=False, **kwargs)
    compiled = StreamDecoder(charset, **kwargs)
    spy = Spy(compiled._loop)
    compiled._loop = spy  # type: ignore[assignment]
    want = list(python.records(events))
    got = list(compiled.records(events))
    assert [canon(r) for r in got] == [canon(r) for r in want]
    assert compiled.events_seen == python.events_seen == len(events)
    return got, spy


def mixed() -> Binlog:
    b = Binlog().rotate()
    for i in range(3):  # single-row transactions
        b.gtid().insert("t", (i, i)).xid()
    b.gtid().insert("t", (10, 1), (11, None), v2=True).insert("u", (1, 2)).xid()  # two tables
    b.gtid().update("t", ((10, 1), (10, 2)), ((11, None), (12, 5)), v2=True).xid()  # a key change
    b.gtid().delete("t", (12, 5)).xid()
    b.gtid().insert("other", (1, 1)).xid()  # another table only: throttled progress
    b.gtid().insert("other", (2, 2)).insert("t", (20, 20)).xid()  # another table and ours
    b.heartbeat()  # between transactions: progress
    b.gtid().insert("t", (21, 21)).heartbeat().insert("t", (22, 22)).xid()  # inside one: nothing
    b.gtid().query("BEGIN").insert("t", (23, 23)).query("COMMIT")  # ended by a COMMIT query
    b.gtid(FL_STANDALONE).query("ALTER TABLE t ADD c2 INT")  # DDL, then the table's next version
    b.alter("t", 3).gtid().insert("t", (24, 1, 2)).xid()
    b.rotate("mariadb-bin.000008")  # a new file: new table ids
    b.alter("t", 3).gtid().insert("t", (25, 1, 2)).xid()
    b.gtid(domain=1).insert("t", (26, 1, 2)).xid()  # another domain
    b.gtid(FL_ALLOW_PARALLEL).insert("t", (27, 1, 2)).xid()  # not transactional: a guarded group
    b.gtid().insert("t", *[(100 + i, i, i) for i in range(50)]).xid()
    return b


@pytest.mark.parametrize("batch_bytes", [1, 90, 300, 1 << 20])
def test_the_compiled_loop_gives_the_python_paths_records_however_the_batches_are_cut(
    batch_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream_decoder_module, "BATCH_BYTES", batch_bytes)
    events = mixed().events
    records, spy = both(events)
    assert len(records) > 80
    # whole transactions in a batch: the common ones are the compiled loop's (the 50-row one too
    # when it fits)
    assert spy.records > {1: -1, 90: -1, 300: 10, 1 << 20: 60}[batch_bytes]
    assert spy.foreign == 0  # the one transaction of another table only has its first TABLE_MAP
    state = GtidState((Gtid(0, 1, 100),))
    records, _ = both(events, source_server_id=1, gtid_state=state)
    contexts = [r.position.context for r in records if isinstance(r, ChangeEvent)]
    assert all(c is not None and c.server_id == 1 for c in contexts)
    # the state before the transaction (its second one, seq 102)
    assert contexts[1] is not None and contexts[1].gtid_state == GtidState((Gtid(0, 1, 101),))
    two_domains = GtidState((Gtid(0, 1, 100), Gtid(1, 1, 5)))
    both(events, source_server_id=1, gtid_state=two_domains)


def test_a_transaction_split_across_batches_is_left_whole_to_the_python_path() -> None:
    b = Binlog().rotate().gtid().insert("t", (1, 1)).xid().gtid().insert("t", (2, 2))
    decoder = StreamDecoder(CHARSETS.__getitem__, table_filter=TableFilter(("d.t",)))
    first = list(decoder.records(b.events[:5]))  # compiles the table (the Python path)
    assert [type(r) for r in first] == [ChangeEvent, TransactionEnd]
    loop, tx = decoder._loop, decoder._tx
    assert loop is not None
    again = Binlog(seq=b.seq - 2).rotate().gtid().insert("t", (1, 1)).xid().gtid().insert("t", (2, 2))
    stop, records, gtid, _, foreign = loop.run(again.events, 1, tx.file_pos, None)
    assert stop == 5 and [canon(r) for r in records] == [canon(r) for r in first] and foreign is None
    assert gtid == Gtid(0, 1, 101)
    # the second transaction has no end in the list: nothing taken, its GTID left to the Python path
    assert loop.run(again.events, 5, tx.file_pos, None)[:3] == (5, [], None)
    whole = again.xid().events
    stop, records, gtid, _, _ = loop.run(whole, 5, tx.file_pos, None)
    assert stop == len(whole) and len(records) == 2 and gtid == Gtid(0, 1, 102)
    # a Position of another file, or none: nothing taken (the Python path parses the new name)
    assert loop.run(whole, 5, None, None)[0] == 5


def test_resumes_inside_and_after_a_transaction_are_the_python_paths() -> None:
    b = mixed()
    records, _ = both(b.events)
    changes = [r for r in records if isinstance(r, ChangeEvent)]
    two_tables = changes[3].position  # the first row of the transaction of two tables
    # the server starts the dump at the restart point's transaction
    start = next(i for i, e in enumerate(b.events) if struct.unpack_from("<I", e, 13)[0] == two_tables.offset)
    resumed = b.events[:1] + b.events[start + 1 :]
    for skip in (1, 2, 3):
        got, _ = both(resumed, resume=RestartPoint(two_tables, skip))
        assert [r for r in got if isinstance(r, ChangeEvent)] == changes[3 + skip :]
    boundary = next(
        r for r in records if isinstance(r, TransactionEnd) and r.last_position == two_tables.at_row(2)
    )
    got, spy = both(resumed, resume=boundary.restart)
    assert [r for r in got if isinstance(r, ChangeEvent)] == changes[6:] and spy.records > 0


def test_the_golden_events_decode_the_same_both_ways() -> None:
    for table_filter in (TableFilter(), TableFilter(("g.*",), ("g.t",))):
        both(EVENTS, table_filter=table_filter)
    # transactions of another table: taken (but the first with each TABLE_MAP), their progress
    # made by the Python decoder
    records, spy = both(EVENTS, table_filter=TableFilter(("g.*",), ("g.t",)))
    assert spy.foreign == 2 and spy.records == 0 and len(records) == 7  # one per transaction


def test_records_from_batches_give_the_same_records_wherever_the_lists_are_cut() -> None:
    events = mixed().events
    want, _ = both(events)
    for size in (1, 2, 3, 7, len(events)):
        cuts = [events[i : i + size] for i in range(0, len(events), size)]
        decoder = StreamDecoder(
            CHARSETS.__getitem__, table_filter=TableFilter(("d.t", "d.u")), progress_interval_s=0.0
        )
        got = list(decoder.records_from_batches(cuts))
        assert [canon(r) for r in got] == [canon(r) for r in want]


def test_holding_says_whether_records_come_without_more_input() -> None:
    b = Binlog().rotate().gtid().insert("t", (1, 1)).xid().gtid().insert("t", (2, 2)).xid()
    decoder = StreamDecoder(CHARSETS.__getitem__, table_filter=TableFilter(("d.t",)))
    seen = []
    for record in decoder.records_from_batches([b.events[:5], b.events[5:]]):
        seen.append((type(record).__name__, decoder.holding()))
    # the first list's transaction went by the Python path (its table was new), its XID still to
    # decode after the row; the second list's by the compiled loop, whose records wait in a list
    assert seen == [
        ("ChangeEvent", True),
        ("TransactionEnd", False),
        ("ChangeEvent", True),
        ("TransactionEnd", False),
    ]
    assert not decoder.holding()


def test_split_packets_takes_whole_event_packets_only() -> None:
    from headwater_native import split_packets

    def packet(payload: bytes) -> bytes:
        return len(payload).to_bytes(3, "little") + b"\x07" + payload

    one, two = b"\x00" + b"e1" + b"CRC4", b"\x00" + b"event2" + b"CRC4"
    data = packet(one) + packet(two)
    assert split_packets(data, 4) == ([b"e1", b"event2"], len(data))
    assert split_packets(data, 0) == ([b"e1CRC4", b"event2CRC4"], len(data))
    assert split_packets(data[:-1], 4) == ([b"e1"], len(packet(one)))  # the second not all here
    assert split_packets(data[:3], 4) == ([], 0)
    eof, error = packet(b"\xfe\x00\x00\x02\x00"), packet(b"\xff\x15\x04#HY000boom")
    assert split_packets(packet(one) + eof + packet(two), 4) == ([b"e1"], len(packet(one)))
    assert split_packets(error, 4) == ([], 0)
    continued = b"\xff\xff\xff\x01\x00" + bytes(10)  # an event longer than one packet
    assert split_packets(continued, 4) == ([], 0)
    assert split_packets(packet(b"\x00ab"), 4) == ([], 0)  # shorter than its checksum: events() says why


def test_a_large_transaction_is_left_to_the_python_path_which_streams_it() -> None:
    b = Binlog().rotate().gtid().insert("t", (1, 1)).xid()
    b.gtid().insert("t", *[(10 + i, i) for i in range(1000)])
    b.insert("t", *[(2000 + i, i) for i in range(1000)]).xid()  # two rows events of 9 KB
    records, spy = both(b.events)
    assert len(records) == 2 + 2001 and spy.records == 0  # the first: its table's first TABLE_MAP
    decoder = StreamDecoder(CHARSETS.__getitem__, table_filter=TableFilter(("d.t",)))
    list(decoder.records(b.events[:5]))
    assert decoder._loop is not None
    assert decoder._loop.run(b.events, 5, decoder._tx.file_pos, None)[0] == 5  # over 16 KiB of rows


def test_a_restart_after_any_record_resumes_without_loss_or_duplicate() -> None:
    """A crash after any record: the stream from its restart point (the server starts at the
    transaction's GTID, or at the boundary) gives exactly the records after it, by both paths."""
    b = mixed()
    full, _ = both(b.events)
    kept = [r for r in full if isinstance(r, ChangeEvent | TransactionEnd)]
    # each event's file, its rotate and where it ends
    files, rotates, file, rotate = [], {}, "", b.events[0]
    for ev in b.events:
        if ev[4] == EventType.ROTATE:
            file, rotate = ev[27:].decode(), ev
            rotates[file] = rotate
        files.append(file)
    event_ends = [struct.unpack_from("<I", ev, 13)[0] for ev in b.events]
    for k, record in enumerate(kept):
        if isinstance(record, ChangeEvent):
            point = RestartPoint.after(record.position)
            where = record.position
        else:
            point = record.restart
            where = record.last_position
        offset = point.transaction.offset
        # the first event starting there: after the one ending there (a GTID's offset is its start)
        j = next(i + 1 for i, e in enumerate(event_ends) if files[i] == where.file and e == offset)
        got, _ = both([rotates[where.file], *b.events[j:]], resume=point)
        # the changes after it, each once (a transaction whose rows were all handled ends in a
        # SourceProgress instead of its TransactionEnd, as before)
        changes = [canon(r) for r in got if isinstance(r, ChangeEvent)]
        assert changes == [canon(r) for r in kept[k + 1 :] if isinstance(r, ChangeEvent)]
        got_ends = [canon(r) for r in got if isinstance(r, TransactionEnd)]
        assert (
            got_ends
            == [canon(r) for r in kept[k + 1 :] if isinstance(r, TransactionEnd)][
                -len(got_ends) or len(kept) :
            ]
        )
