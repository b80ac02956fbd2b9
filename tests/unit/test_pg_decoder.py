"""pgoutput messages, byte by byte, into SourceRecords (no server: the golden tests run against one)."""

from __future__ import annotations

import datetime as dt
import decimal
import struct

import pytest

from cdc.core.errors import SourceProtocolError, SourceSettingsError, UnsupportedColumnType
from cdc.core.events import ChangeEvent, SourceProgress, TransactionEnd
from cdc.core.positions import RestartPoint, lsn_position
from cdc.core.schemas import ArrowKind
from cdc.core.table_filter import TableFilter
from cdc.sources.postgresql.pgoutput import HEARTBEAT_PREFIX, CatalogColumns, PgoutputDecoder
from cdc.sources.postgresql.values import arrow_type, converter

INT4, TEXT, NUMERIC, TIMESTAMPTZ, DATE = 23, 25, 1700, 1184, 1082
CATALOG = CatalogColumns({"id": "integer", "v": "text"}, frozenset({"id"}), ("id",))


def relation(relid: int = 16400, name: str = "t", identity: str = "d") -> bytes:
    cols = [(1, "id", INT4, -1), (0, "v", TEXT, -1)]
    out = b"R" + struct.pack("!I", relid) + b"public\0" + name.encode() + b"\0" + identity.encode()
    out += struct.pack("!h", len(cols))
    for flags, col, oid, typmod in cols:
        out += bytes([flags]) + col.encode() + b"\0" + struct.pack("!Ii", oid, typmod)
    return out


def tup(*values: bytes | str | None) -> bytes:
    out = struct.pack("!h", len(values))
    for v in values:
        if v is None:
            out += b"n"
        elif v == "u":
            out += b"u"
        else:
            assert isinstance(v, bytes)
            out += b"t" + struct.pack("!I", len(v)) + v
    return out


def begin(lsn: int, xid: int) -> bytes:
    return b"B" + struct.pack("!QqI", lsn, 0, xid)


def commit(lsn: int) -> bytes:
    return b"C" + struct.pack("!BQQq", 0, lsn, lsn + 40, 0)


def insert(*values: bytes | None, relid: int = 16400) -> bytes:
    return b"I" + struct.pack("!I", relid) + b"N" + tup(*values)


def decoder(start: RestartPoint | None = None, tables: tuple[str, ...] = ("public.*",)) -> PgoutputDecoder:
    return PgoutputDecoder(TableFilter(tables), lambda relid: CATALOG, start)


def feed(d: PgoutputDecoder, *messages: bytes) -> list[object]:
    out: list[object] = []
    for m in messages:
        out += d.feed(m)
    return out


def test_a_transaction_is_rows_at_its_commit_lsn_then_its_end() -> None:
    d = decoder()
    records = feed(d, begin(0x500, 7), relation(), insert(b"1", b"a"), insert(b"2", None), commit(0x500))
    e1, e2, end = records
    assert isinstance(e1, ChangeEvent) and isinstance(e2, ChangeEvent) and isinstance(end, TransactionEnd)
    assert (e1.after, e2.after, e1.key) == ((1, "a"), (2, None), (1,))
    assert (e1.position, e2.position) == (lsn_position(0x500, 0, 7), lsn_position(0x500, 1, 7))
    assert e1.schema.primary_key == ("id",) and not e1.schema.columns[0].nullable
    assert (end.row_count, end.transaction_id, end.restart) == (
        2,
        "0-0-7",
        RestartPoint(lsn_position(0x500, 0, 7), 2),
    )


def test_restart_drops_earlier_transactions_and_the_rows_already_handled() -> None:
    d = decoder(RestartPoint(lsn_position(0x600, 0, 8), 1))
    records = feed(
        d,
        relation(),
        begin(0x500, 7), insert(b"1", b"a"), commit(0x500),  # before the checkpoint
        begin(0x600, 8), insert(b"2", b"b"), insert(b"3", b"c"), commit(0x600),  # row 0 handled
        begin(0x700, 9), insert(b"4", b"d"), commit(0x700),
    )  # fmt: skip
    assert [(r.after, r.position.row) for r in records if isinstance(r, ChangeEvent)] == [
        ((3, "c"), 1),
        ((4, "d"), 0),
    ]


def test_heartbeats_and_other_tables_transactions_are_restart_points() -> None:
    d = decoder(tables=("public.t",))
    message = (
        b"M"
        + bytes([0])
        + struct.pack("!Q", 0x900)
        + HEARTBEAT_PREFIX.encode()
        + b"\0"
        + struct.pack("!I", 0)
    )
    other = relation(16401, "other")
    records = feed(d, other, begin(0x800, 3), insert(b"1", b"x", relid=16401), commit(0x800), message)
    assert [r.restart for r in records if isinstance(r, SourceProgress)] == [
        RestartPoint(lsn_position(0x800, 0, 3)),
        RestartPoint(lsn_position(0x900, 0, 0)),
    ]


def test_update_without_old_tuple_and_unchanged_toast() -> None:
    d = decoder()
    feed(d, relation(), begin(0x500, 7))
    update = b"U" + struct.pack("!I", 16400) + b"N" + tup(b"1", b"new")
    # rows are held for a batch until the next other message (here the commit)
    assert d.feed(update) == []
    event, end = d.feed(commit(0x500))
    assert isinstance(event, ChangeEvent) and (event.op.value, event.before, event.after) == (
        "u",
        None,
        (1, "new"),
    )
    assert isinstance(end, TransactionEnd) and end.row_count == 1
    feed(d, begin(0x600, 8))
    with pytest.raises(SourceSettingsError, match=r"public\.t\.v: .*REPLICA IDENTITY FULL"):
        d.feed(b"U" + struct.pack("!I", 16400) + b"N" + tup(b"1", "u"))
    with pytest.raises(SourceProtocolError, match="relation 16499"):
        d.feed(insert(b"1", b"x", relid=16499))


def test_value_conversions_and_refusals() -> None:
    assert arrow_type(NUMERIC, ((10 << 16) | 2) + 4).kind is ArrowKind.DECIMAL
    assert arrow_type(NUMERIC, -1).kind is ArrowKind.STRING  # any precision, NaN: PostgreSQL's text
    tstz = converter(ArrowKind.TIMESTAMP_UTC)
    assert tstz is not None and tstz(b"2024-02-29 13:45:01.25+00") == dt.datetime(
        2024, 2, 29, 13, 45, 1, 250000, dt.UTC
    )
    dec = converter(ArrowKind.DECIMAL)
    assert dec is not None and dec(b"-1.50") == decimal.Decimal("-1.50")
    with pytest.raises(ValueError):
        dec(b"NaN")
    date = converter(ArrowKind.DATE)
    assert date is not None
    with pytest.raises(ValueError):
        date(b"infinity")
    d = PgoutputDecoder(
        TableFilter(("public.*",)),
        lambda relid: CatalogColumns({"id": "integer", "d": "date"}, frozenset(), ("id",)),
        None,
    )
    rel = b"R" + struct.pack("!I", 1) + b"public\0dates\0d" + struct.pack("!h", 2)
    rel += (
        bytes([1])
        + b"id\0"
        + struct.pack("!Ii", INT4, -1)
        + bytes([0])
        + b"d\0"
        + struct.pack("!Ii", DATE, -1)
    )
    feed(d, rel, begin(0x10, 1))
    with pytest.raises(UnsupportedColumnType, match="d"):
        d.feed(insert(b"1", b"infinity", relid=1))
