"""SQLite from Kafka, column-wise: the same stored values as the per-change path, or that path.

The same envelopes (built by the writer's encoder) go to two fresh SQLite files: as chunks through
``apply_columns`` into one, as ChangeEvents through the sink's per-change path into the other. The
tables must then hold the same rows with the same storage classes (read with the sqlite3 module:
an int is INTEGER, a str TEXT, bytes a BLOB), for every kind of the type table and a key of many
kinds (deletes bind the key columns like the upserts do).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import sqlite3
from pathlib import Path

import pytest

from cdc.core.events import ChangeEvent, ColumnValue, Op
from cdc.core.positions import Gtid, Position
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from cdc.stream.arrow_changes import change_columns
from cdc.stream.kafka_chunks import ChangeChunk, ChunkRecords
from sinks.contract import AppliedState, SinkBatch
from sinks.sql import SqlSink, SqlSinkSettings, mariadb_columnar, sqlite_columnar
from sinks.sql.columnar_apply import apply_columns
from tests.unit.test_sinkcol_columns import _reader, _values


def _col(name: str, source_type: str, kind: ArrowKind, precision: int = 0, scale: int = 0) -> Column:
    return Column(name, source_type, ArrowType(kind, precision, scale), True)


def _key(name: str, source_type: str, kind: ArrowKind, precision: int = 0, scale: int = 0) -> Column:
    return Column(name, source_type, ArrowType(kind, precision, scale), False)


ALL = TableSchema.build(
    TableRef("sinkcol", "every_kind"),
    (
        _key("id", "bigint unsigned", ArrowKind.UINT64),
        _col("flag", "tinyint(1)", ArrowKind.BOOL),
        _col("i8", "tinyint", ArrowKind.INT8),
        _col("u8", "tinyint unsigned", ArrowKind.UINT8),
        _col("i16", "smallint", ArrowKind.INT16),
        _col("u16", "smallint unsigned", ArrowKind.UINT16),
        _col("i32", "int", ArrowKind.INT32),
        _col("u32", "int unsigned", ArrowKind.UINT32),
        _col("i64", "bigint", ArrowKind.INT64),
        _col("u64", "bigint unsigned", ArrowKind.UINT64),
        _col("f32", "float", ArrowKind.FLOAT32),
        _col("f64", "double", ArrowKind.FLOAT64),
        _col("price", "decimal(10,4)", ArrowKind.DECIMAL, 10, 4),
        _col("tiny", "decimal(12,8)", ArrowKind.DECIMAL, 12, 8),
        _col("huge", "decimal(65,30)", ArrowKind.DECIMAL, 65, 30),
        _col("name", "varchar(50)", ArrowKind.STRING),
        _col("body", "mediumtext", ArrowKind.STRING),
        _col("doc", "json", ArrowKind.STRING),
        _col("sha", "varbinary(20)", ArrowKind.BINARY),
        _col("blob", "blob", ArrowKind.BINARY),
        _col("day", "date", ArrowKind.DATE),
        _col("wall", "datetime(6)", ArrowKind.TIMESTAMP),
        _col("wall0", "datetime", ArrowKind.TIMESTAMP),
        _col("instant", "timestamp(3)", ArrowKind.TIMESTAMP_UTC),
    ),
    ("id",),
)
# a key of many kinds: the deletes bind each as the per-change path does
KEYED = TableSchema.build(
    TableRef("sinkcol", "many_keys"),
    (
        _key("name", "varchar(20)", ArrowKind.STRING),
        _key("day", "date", ArrowKind.DATE),
        _key("at", "datetime(6)", ArrowKind.TIMESTAMP),
        _key("seen", "timestamp(6)", ArrowKind.TIMESTAMP_UTC),
        _key("amount", "decimal(20,10)", ArrowKind.DECIMAL, 20, 10),
        _key("tag", "varbinary(8)", ArrowKind.BINARY),
        _key("big", "bigint unsigned", ArrowKind.UINT64),
        _col("note", "text", ArrowKind.STRING),
    ),
    ("name", "day", "at", "seen", "amount", "tag", "big"),
)
TIMED = TableSchema.build(
    TableRef("sinkcol", "timed"),
    (_key("id", "int", ArrowKind.INT32), _col("took", "time(6)", ArrowKind.DURATION)),
    ("id",),
)
_TINY = ("0.00000001", "0.00000000", "-0.00000099", "0.00000100", "-0.00000000", "1234.00000010")


def _row(key: int, v: int) -> tuple[ColumnValue, ...]:
    """Values across each kind's edges: nulls, signs, uint64 above 2^63, decimals under 1e-6,
    base64 padding of 0-2, years 1 and 9999, fractions of every width."""
    return (
        2**64 - 1 - key if key % 5 == 0 else key,
        None if v % 3 == 0 else v % 2 == 0,
        -128 + v % 256,
        v % 256,
        -(2**15) + v,
        2**16 - 1 - v,
        None if v % 4 == 0 else -(2**31) + v,
        2**32 - 1 - v,
        -(2**63) + v if v % 2 else 2**63 - 1 - v,
        2**63 + v if v % 3 else v,
        0.1 * v if v % 4 else None,
        -1.0 / (v + 3) if v % 5 else -0.0,
        decimal.Decimal(f"{v - 500}.{v % 10000:04d}"),
        decimal.Decimal(_TINY[v % len(_TINY)]) if v % 7 else None,
        decimal.Decimal(f"{v}{'9' * 30}.{'1' * 30}") if v % 2 else decimal.Decimal("0E-30"),
        None if v % 6 == 0 else f'naïve ✓ "quoted" \\ {v}\n\x00',
        "" if v % 5 == 0 else "Lorem ipsum " * (v % 4),
        f'{{"tags": ["a", "b"], "n": {v}}}',
        None if v % 8 == 0 else bytes([v % 256, 0, 255, 10, 13])[: v % 5 + 1],
        bytes(range(v % 7)) + b"\n\x00=\xff"[: v % 4],
        dt.date(1, 1, 1) if v % 9 == 0 else dt.date(9999, 12, 31) - dt.timedelta(days=v),
        dt.datetime(1, 1, 1, 0, 0, 0, 1)
        if v % 11 == 0
        else dt.datetime(9999, 12, 31, 23, 59, 59, 999_999)
        if v % 13 == 0
        else dt.datetime(2024, 1, 1, 0, 0, 0, (v * 997) % 1_000_000),
        dt.datetime(1000, 1, 1) if v % 10 == 0 else dt.datetime(1999, 12, 31, 23, 59, v % 60),
        dt.datetime(2024, 6, 1, 12, 0, 0, (v % 1000) * 1000, tzinfo=dt.UTC) if v % 5 else None,
    )


def _keyed_row(key: int, v: int) -> tuple[ColumnValue, ...]:
    return (
        f"k{key % 3}",
        dt.date(2000, 1, 1) + dt.timedelta(days=key),
        dt.datetime(2024, 1, 1, 0, 0, 0, key * 1001),
        dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=key),
        decimal.Decimal(f"0.{key:010d}"),  # under 1e-6 for most keys: the '1E-10' spelling
        bytes([key % 256, 0]),
        2**63 + key if key % 2 else key,
        f"note {v}",
    )


def _pos(seq: int, row: int) -> Position:
    return Position(Gtid(0, 7703, seq), "bin.000005", 1000 + 100 * seq, row)


def _event(
    schema: TableSchema,
    op: Op,
    seq: int,
    row: int,
    image: tuple[ColumnValue, ...],
    before: tuple[ColumnValue, ...] | None = None,
) -> ChangeEvent:
    pos = _pos(seq, row)
    after = None if op is Op.DELETE else image
    before = image if op is Op.DELETE else before
    key = tuple(image[i] for i in schema.key_indexes())
    return ChangeEvent(op, schema, key, before, after, pos, 1_700_000_000_000, str(pos.gtid))


def _stream(schema: TableSchema, row: object) -> tuple[list[ChangeEvent], list[ChangeEvent]]:
    """A first batch of inserts, then one of every kind: inserts, repeated updates, deletes of
    keys held before and of keys inserted in the same batch, a delete then an insert again."""
    make = row  # (key, v) -> image
    e = _event
    first = [e(schema, Op.CREATE, 1, i, make(i, i)) for i in range(60)]  # type: ignore[operator]
    second = [e(schema, Op.CREATE, 2, i, make(100 + i, i + 1)) for i in range(40)]  # type: ignore[operator]
    second += [e(schema, Op.UPDATE, 3, i, make(i, 300 + i), make(i, i)) for i in range(30)]  # type: ignore[operator]
    second += [e(schema, Op.UPDATE, 4, i, make(i, 400 + i), make(i, 300 + i)) for i in range(10)]  # type: ignore[operator]
    second += [e(schema, Op.DELETE, 5, i, make(40 + i, 40 + i)) for i in range(10)]  # type: ignore[operator]
    second += [e(schema, Op.DELETE, 6, i, make(100 + i, i + 1)) for i in range(5)]  # type: ignore[operator]
    second += [e(schema, Op.CREATE, 7, i, make(40 + i, 700 + i)) for i in range(3)]  # type: ignore[operator]
    return first, second


def _sink(path: Path, threshold: int = 10) -> SqlSink:
    sink = SqlSink(SqlSinkSettings(f"sqlite:///{path}", "sinkcol", copy_threshold_rows=threshold))
    sink.open()
    return sink


def _chunks(events: list[ChangeEvent], start: int, *schemas: TableSchema) -> ChunkRecords:
    """Each table's events as two partitions' chunks (split by the key's hash, as a keyed topic)."""
    reader = _reader(*schemas)
    chunks = []
    for schema in schemas:
        for part in (0, 1):
            mine = [e for e in events if e.schema is schema and hash(e.key) % 2 == part]
            offsets = list(range(start + 1, start + 1 + len(mine)))
            topic = f"sinkcol.sinkcol.{schema.ref.table}:{part}"
            chunks.append(ChangeChunk(topic, _values(mine), offsets, reader))
    return ChunkRecords(chunks)


def _state(events: list[ChangeEvent], offset: int, *schemas: TableSchema) -> AppliedState:
    offsets = {f"sinkcol.sinkcol.{s.ref.table}:{p}": offset for s in schemas for p in (0, 1)}
    return AppliedState(max(e.position for e in events), offsets)


def _stored(path: Path, table: str) -> list[tuple[tuple[str, object], ...]]:
    """Each row as (storage class, value) pairs, in a stable order."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()
    typed = [tuple((type(v).__name__, v) for v in row) for row in rows]
    return sorted(typed, key=repr)


def test_a_batch_applied_column_wise_stores_what_the_per_change_path_stores(tmp_path: Path) -> None:
    first_all, second_all = _stream(ALL, _row)
    first_keyed, second_keyed = _stream(KEYED, _keyed_row)
    first, second = first_all + first_keyed, second_all + second_keyed
    a, b = _sink(tmp_path / "columns.db"), _sink(tmp_path / "events.db")
    for sink in (a, b):  # the tables and their first rows, the usual way
        sink.apply(SinkBatch(first, _state(first, 60, ALL, KEYED)))
    batch = SinkBatch(_chunks(second, 60, ALL, KEYED), _state(second, 200, ALL, KEYED))
    assert apply_columns(a, batch)  # the column-wise path took it
    b.apply(SinkBatch(_reader(ALL, KEYED).events(_values(second)), batch.state))
    # then an insert-only batch: no key repeats, nothing to collapse
    third = [_event(ALL, Op.CREATE, 8, i, _row(500 + i, 800 + i)) for i in range(20)]
    third += [_event(KEYED, Op.CREATE, 8, 20 + i, _keyed_row(500 + i, 800 + i)) for i in range(20)]
    batch = SinkBatch(_chunks(third, 200, ALL, KEYED), _state(third, 220, ALL, KEYED))
    assert apply_columns(a, batch)
    b.apply(SinkBatch(_reader(ALL, KEYED).events(_values(third)), batch.state))
    for table in ("every_kind", "many_keys"):
        columns, events = _stored(tmp_path / "columns.db", table), _stored(tmp_path / "events.db", table)
        assert len(columns) == 60 + 40 - 10 - 5 + 3 + 20, table
        assert columns == events, table
    stored = {kind for row in _stored(tmp_path / "columns.db", "every_kind") for kind, _ in row}
    assert stored == {"int", "float", "str", "bytes", "NoneType"}
    assert a.applied() == b.applied()
    assert sorted(map(repr, a.read_rows(ALL.ref))) == sorted(map(repr, b.read_rows(ALL.ref)))
    a.close()
    b.close()


def test_what_sqlite_cannot_take_column_wise_goes_the_per_change_way(tmp_path: Path) -> None:
    sink = _sink(tmp_path / "s.db")
    first, second = _stream(ALL, _row)
    sink.apply(SinkBatch(first, _state(first, 60, ALL)))
    small = second[:4]  # under the threshold
    assert not apply_columns(sink, SinkBatch(_chunks(small, 60, ALL), _state(small, 70, ALL)))
    timed = [_event(TIMED, Op.CREATE, 9, i, (i, dt.timedelta(hours=-1, microseconds=i))) for i in range(20)]
    assert not apply_columns(sink, SinkBatch(_chunks(timed, 0, TIMED), _state(timed, 20, TIMED)))
    sink.apply(SinkBatch(_chunks(timed, 0, TIMED), _state(timed, 20, TIMED)))  # per change
    assert len(sink.read_rows(TIMED.ref)) == 20
    sink.close()


def test_columns_in_other_forms_than_the_envelope_text_go_the_per_change_way() -> None:
    first, _second = _stream(ALL, _row)
    columns = change_columns(_values(first), ALL)
    assert columns is not None and sqlite_columnar.fits(columns) and mariadb_columnar.fits(columns)
    price = [c.name for c in ALL.columns].index("price")
    typed = (*columns.json_image[:price], columns.image[price], *columns.json_image[price + 1 :])
    as_decimals = dataclasses.replace(columns, json_image=typed)  # decimals no longer as their text
    assert not sqlite_columnar.fits(as_decimals)
    assert not mariadb_columnar.fits(as_decimals)


@pytest.mark.parametrize("threshold", [None])
def test_a_sink_without_a_threshold_never_asks_for_columns(tmp_path: Path, threshold: None) -> None:
    settings = SqlSinkSettings(f"sqlite:///{tmp_path / 'n.db'}", "sinkcol", copy_threshold_rows=threshold)
    assert not SqlSink(settings).takes_change_columns
    assert SqlSink(SqlSinkSettings(f"sqlite:///{tmp_path / 'y.db'}", "sinkcol")).takes_change_columns
