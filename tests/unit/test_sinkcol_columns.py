"""The columnar way back from Kafka envelopes gives the values the per-change way gives, or nothing.

Envelopes are built by the writer's own encoder (no Kafka needed); a chunk of them is decoded both
as Arrow columns and as ChangeEvents, and applied both ways to two Iceberg history sinks whose
tables must then be equal row by row.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

from cdc.config.models import IcebergSinkConfig, KafkaStreamConfig
from cdc.core.events import ChangeEvent, ColumnValue, Op
from cdc.core.positions import Gtid, Position
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from cdc.daemon.sink_runner import _tally
from cdc.stream.arrow_changes import change_columns
from cdc.stream.envelope import EnvelopeEncoder
from cdc.stream.json_decode import row_decoder
from cdc.stream.kafka_chunks import ChangeChunk, ChunkRecords
from cdc.stream.kafka_reader import KafkaChangeReader
from sinks.contract import AppliedState, SinkBatch
from sinks.iceberg.catalogs import open_catalog
from sinks.iceberg.history_sink import IcebergHistorySink


def _col(name: str, source_type: str, kind: ArrowKind, precision: int = 0, scale: int = 0) -> Column:
    return Column(name, source_type, ArrowType(kind, precision, scale), True)


WIDE = TableSchema.build(
    TableRef("sinkcol", "wide"),
    (
        Column("id", "bigint unsigned", ArrowType(ArrowKind.UINT64), False),
        _col("flag", "tinyint(1)", ArrowKind.BOOL),
        _col("small", "smallint", ArrowKind.INT16),
        _col("u32", "int unsigned", ArrowKind.UINT32),
        _col("f32", "float", ArrowKind.FLOAT32),
        _col("f64", "double", ArrowKind.FLOAT64),
        _col("price", "decimal(10,4)", ArrowKind.DECIMAL, 10, 4),
        _col("huge", "decimal(65,30)", ArrowKind.DECIMAL, 65, 30),
        _col("name", "varchar(50)", ArrowKind.STRING),
        _col("blob", "varbinary(40)", ArrowKind.BINARY),
        _col("day", "date", ArrowKind.DATE),
        _col("wall", "datetime(6)", ArrowKind.TIMESTAMP),
        _col("wall0", "datetime", ArrowKind.TIMESTAMP),
        _col("instant", "timestamp(3)", ArrowKind.TIMESTAMP_UTC),
    ),
    ("id",),
)


def _row(i: int) -> tuple[ColumnValue, ...]:
    """Values across each kind's edges: nulls, signs, base64 padding of 0-2, fractions."""
    blob = bytes(range(i % 7)) + b"\n\x00=\xff"[: i % 4]
    return (
        2**64 - 1 - i if i % 5 == 0 else i,
        None if i % 3 == 0 else i % 2 == 0,
        -(2**15) + i,
        2**32 - 1 - i,
        0.1 * i if i % 4 else None,
        -1.0 / (i + 3),
        decimal.Decimal(f"{-i}.{i % 10000:04d}"),
        decimal.Decimal(f"{i}{'9' * 30}.{'1' * 30}") if i % 2 else None,
        None if i % 6 == 0 else f'naïve ✓ "quoted" \\ {i}\n',
        None if i % 8 == 0 else blob,
        dt.date(2024, 2, 29) + dt.timedelta(days=i),
        dt.datetime(2024, 1, 1, 0, 0, 0, (i * 997) % 1_000_000),
        dt.datetime(1999, 12, 31, 23, 59, i % 60),
        dt.datetime(2024, 6, 1, 12, 0, 0, (i % 1000) * 1000, tzinfo=dt.UTC) if i % 5 else None,
    )


def _pos(seq: int, row: int) -> Position:
    return Position(Gtid(0, 7701, seq), "bin.000003", 1000 + 100 * seq, row)


def _event(
    op: Op, seq: int, row: int, image: tuple[ColumnValue, ...], before: tuple[ColumnValue, ...] | None = None
) -> ChangeEvent:
    pos = _pos(seq, row)
    after = None if op is Op.DELETE else image
    before = image if op is Op.DELETE else before
    return ChangeEvent(op, WIDE, (image[0],), before, after, pos, 1_700_000_000_000 + seq, str(pos.gtid))


def _events() -> list[ChangeEvent]:
    out = [_event(Op.READ, 1, i, _row(i)) for i in range(40)]
    out += [_event(Op.CREATE, 2, i, _row(100 + i)) for i in range(40)]
    out += [_event(Op.UPDATE, 3, i, _row(100 + i)[:2] + _row(i)[2:], before=_row(100 + i)) for i in range(10)]
    out += [_event(Op.DELETE, 4, i, _row(i)) for i in range(5)]
    return out


def _reader(*schemas: TableSchema) -> KafkaChangeReader:
    reader = KafkaChangeReader(KafkaStreamConfig(bootstrap_servers="127.0.0.1:1"), "sinkcol", lambda _p: {})
    for schema in schemas:  # what the schema topic announced
        reader._schemas.known[schema.version] = (schema, row_decoder(schema), schema.key_indexes())
    return reader


def _values(events: list[ChangeEvent]) -> list[bytes]:
    encoder = EnvelopeEncoder("sinkcol")
    return [encoder.encode_change(e, ts_ms=1)[1] for e in events]


def test_columns_hold_the_values_the_per_change_decode_gives() -> None:
    values = _values(_events())
    reader = _reader(WIDE)
    columns = change_columns(values, WIDE)
    assert columns is not None
    events = reader.events(values)
    assert columns.op.to_pylist() == [e.op.value for e in events]
    assert columns.position.to_pylist() == [e.position.to_string() for e in events]
    assert columns.source_ts_ms.to_pylist() == [e.source_ts_ms for e in events]
    assert columns.transaction_id.to_pylist() == [e.transaction_id for e in events]
    for i, column in enumerate(WIDE.columns):
        expected = [(e.after if e.after is not None else e.before)[i] for e in events]  # type: ignore[index]
        got = columns.image[i]
        assert got.type == column.arrow_type.to_pyarrow(), column.name
        if column.arrow_type.kind is ArrowKind.FLOAT32:  # pa.array rounds the slow path's doubles so
            expected = pa.array(expected, pa.float32()).to_pylist()
        assert got.to_pylist() == expected, column.name


@pytest.mark.parametrize(
    ("case", "events"),
    [
        ("truncate", [ChangeEvent(Op.TRUNCATE, WIDE, None, None, None, _pos(9, 0), 1, "0-7701-9")]),
        ("key moves", [_event(Op.UPDATE, 9, 0, _row(2), before=_row(1))]),
        ("nan", [_event(Op.CREATE, 9, 0, (*_row(1)[:5], float("nan"), *_row(1)[6:]))]),
        ("zero date", [_event(Op.CREATE, 9, 0, (*_row(1)[:10], "0000-00-00", *_row(1)[11:]))]),
        ("lenient base64", [_event(Op.CREATE, 9, 0, (*_row(1)[:9], "QU JD", *_row(1)[10:]))]),
    ],
)
def test_what_the_columns_cannot_decode_exactly_goes_the_per_change_way(
    case: str, events: list[ChangeEvent]
) -> None:
    values = _values([_event(Op.CREATE, 8, 0, _row(3)), *events])
    assert change_columns(values, WIDE) is None, case
    assert len(_reader(WIDE).events(values)) == 2  # the per-change path still reads them


def test_a_chunk_of_several_table_versions_goes_the_per_change_way() -> None:
    wider = TableSchema.build(WIDE.ref, (*WIDE.columns, _col("extra", "int", ArrowKind.INT32)), ("id",))
    later = ChangeEvent(Op.CREATE, wider, (1,), None, (*_row(1), 5), _pos(9, 0), 1, "0-7701-9")
    values = _values([_event(Op.CREATE, 8, 0, _row(3)), later])
    chunk = ChangeChunk("sinkcol.sinkcol.wide:0", values, [1, 2], _reader(WIDE, wider))
    assert chunk.columns() is None
    assert [e.schema.version for e in chunk.events()] == [WIDE.version, wider.version]


def _history(tmp_path: Path, name: str, records: object) -> pa.Table:
    config = IcebergSinkConfig.model_validate(
        {
            "catalog": {
                "type": "sql",
                "uri": f"sqlite:///{tmp_path}/{name}.db",
                "warehouse": f"file://{tmp_path}/{name}",
            },
            "namespace": "sinkcol",
            "commit_rows": 1_000_000,
        }
    )
    sink = IcebergHistorySink(config, "sinkcol")
    sink.open()
    events = _events()
    state = AppliedState(max(e.position for e in events), {"sinkcol.sinkcol.wide:0": len(events)})
    sink.apply(SinkBatch(records, state))  # type: ignore[arg-type]
    sink.close()
    table = open_catalog(config.catalog, None).load_table("sinkcol.wide__history").scan().to_arrow()
    return table.sort_by("_position")


def test_a_chunk_applied_as_columns_leaves_the_history_the_per_change_path_leaves(tmp_path: Path) -> None:
    events = _events()
    values = _values(events)
    reader = _reader(WIDE)
    chunk = ChangeChunk("sinkcol.sinkcol.wide:0", values, list(range(1, len(values) + 1)), reader)
    assert chunk.columns() is not None  # the fast path is taken
    columnar = _history(tmp_path, "columns", ChunkRecords([chunk]))
    per_change = _history(tmp_path, "events", reader.events(values))
    assert columnar.num_rows == len(events)
    assert columnar.schema == per_change.schema
    assert columnar.to_pylist() == per_change.to_pylist()


def test_rows_a_crashed_cycle_committed_are_dropped_from_redelivered_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table committed, the progress table never heard of it: the consumer delivers the same
    chunks again, and the column-wise path drops exactly the rows the table holds (is_in)."""
    config = IcebergSinkConfig.model_validate(
        {
            "catalog": {
                "type": "sql",
                "uri": f"sqlite:///{tmp_path}/c.db",
                "warehouse": f"file://{tmp_path}/w",
            },
            "namespace": "sinkcol",
            "commit_rows": 1_000_000,
        }
    )
    reader = _reader(WIDE)
    events = _events()
    values = _values(events)
    half = len(values) // 2

    def batch(upto: int) -> SinkBatch:
        chunk = ChangeChunk("sinkcol.sinkcol.wide:0", values[:upto], list(range(1, upto + 1)), reader)
        state = AppliedState(max(e.position for e in events[:upto]), {"sinkcol.sinkcol.wide:0": upto})
        return SinkBatch(ChunkRecords([chunk]), state)

    sink = IcebergHistorySink(config, "sinkcol")
    sink.open()
    sink.apply(batch(half))
    monkeypatch.setattr(IcebergHistorySink, "_record_progress", _killed)
    with pytest.raises(KeyboardInterrupt):
        sink.flush()
    monkeypatch.undo()
    again = IcebergHistorySink(config, "sinkcol")
    again.open()
    assert again.applied() is None
    again.apply(batch(len(values)))  # the first half again, and the rest
    again.close()
    table = open_catalog(config.catalog, None).load_table("sinkcol.wide__history").scan().to_arrow()
    held = table.column("_position").to_pylist()
    assert len(held) == len(set(held)) == len(values)


def _killed(*_args: object) -> object:
    raise KeyboardInterrupt("SIGKILL stand-in")


def test_the_metrics_count_a_decoded_chunk_from_its_columns_as_from_its_events() -> None:
    values = _values(_events())
    by_columns = ChangeChunk("sinkcol.sinkcol.wide:0", values, list(range(1, len(values) + 1)), _reader(WIDE))
    assert by_columns.columns() is not None
    by_events = ChangeChunk("sinkcol.sinkcol.wide:0", values, list(range(1, len(values) + 1)), _reader(WIDE))
    counted: list[Counter[tuple[str, str, str]]] = [Counter(), Counter()]
    latest = [_tally(by_columns, counted[0]), _tally(by_events, counted[1])]
    assert by_columns._events is None  # counted without a ChangeEvent
    assert (
        counted[0]
        == counted[1]
        == Counter(
            {
                ("sinkcol", "wide", "r"): 40,
                ("sinkcol", "wide", "c"): 40,
                ("sinkcol", "wide", "u"): 10,
                ("sinkcol", "wide", "d"): 5,
            }
        )
    )
    assert latest[0] == latest[1] == 1_700_000_000_004
