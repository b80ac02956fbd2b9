"""The merge's watermark dedupe on a chunk read as Arrow columns (tracking.unchanged_rows): the rows
whose key the stream changed at or after the view's boundary are dropped, the same rows as on the
tuple path, for one-column keys (``pc.is_in``), composite keys and key values not of the column's
type; ArrowRows, the chunk log and ReadBatch give back the very values. No services needed."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pyarrow as pa

from cdc.core.events import RowImage
from cdc.core.positions import Gtid, Position, RestartPoint, snapshot_row_position
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from sinks.arrow_rows import ArrowRows
from sinks.read_batch import ReadBatch
from snapshotter.chunk_log import ChunkLog, LoggedChunk
from snapshotter.tracking import Tracked, unchanged_rows

REF = TableRef("bootarrow_db", "t")
VIEW = RestartPoint(Position(Gtid(0, 1, 1), "bin.000001", 4, 0))
KINDS = (ArrowKind.INT64, ArrowKind.STRING, ArrowKind.TIMESTAMP_UTC, ArrowKind.DECIMAL)


def _schema(key: tuple[str, ...]) -> TableSchema:
    columns = tuple(
        Column(name, "x", ArrowType(kind, 10 if kind is ArrowKind.DECIMAL else 0, 2), name != "a")
        for name, kind in zip("abcd", KINDS, strict=True)
    )
    return TableSchema.build(REF, columns, key)


@dataclass(frozen=True)
class _Chunk:
    schema: TableSchema
    rows: tuple[RowImage, ...] | ArrowRows
    last_key: RowImage | None = None
    at: RestartPoint = VIEW
    complete: bool = True
    elapsed_s: float = 0.0


ROWS: tuple[RowImage, ...] = tuple(
    (i, f"k{i % 3}", dt.datetime(2024, 1, 1, i, tzinfo=dt.UTC), Decimal(f"{i}.50")) for i in range(1, 9)
)


def _arrow(schema: TableSchema, rows: tuple[RowImage, ...]) -> ArrowRows:
    columns = list(zip(*rows, strict=True))
    return ArrowRows(
        [pa.array(v, c.arrow_type.to_pyarrow()) for c, v in zip(schema.columns, columns, strict=True)],
        len(rows),
    )


def _both(key: tuple[str, ...], changed: dict[RowImage, tuple[int, int]], at: tuple[int, int]) -> None:
    schema = _schema(key)
    tracked = Tracked(REF, dict(changed))
    expected = list(unchanged_rows(_Chunk(schema, ROWS), tracked, at, {}))
    arrow = _arrow(schema, ROWS)
    got = unchanged_rows(_Chunk(schema, arrow), tracked, at, {})
    assert isinstance(got, ArrowRows)
    assert list(got) == expected
    if len(expected) == len(ROWS):
        assert got is arrow  # nothing dropped: the very object (ChunkResult.prepared relies on it)


def test_one_column_key_dropped_when_changed_at_or_after_the_view() -> None:
    # key 3 changed at the boundary, 5 after it, 7 before it (the chunk's value is the newer one)
    _both(("a",), {(3,): (1, 100), (5,): (1, 200), (7,): (1, 99)}, (1, 100))
    _both(("a",), {(7,): (1, 99)}, (1, 100))  # nothing in the window
    _both(("a",), {}, (1, 100))


def test_composite_and_odd_keys_dropped_as_on_the_tuple_path() -> None:
    _both(("b", "a"), {("k1", 4): (2, 5), ("k0", 3): (2, 6), ("k2", 4): (2, 7)}, (2, 5))
    # a key value not of the column's type (a zero date kept as text) equals no row
    _both(("c",), {("0000-00-00 00:00:00",): (3, 1), (ROWS[1][2],): (3, 1)}, (3, 0))
    _both(("d",), {(Decimal("2.5"),): (3, 1)}, (3, 0))


def test_arrow_rows_give_back_the_row_values(tmp_path: Path) -> None:
    schema = _schema(("a",))
    arrow = _arrow(schema, ROWS)
    assert arrow == ROWS and arrow[-1] == ROWS[-1] and list(arrow[2:5]) == list(ROWS[2:5])
    stamps = [r[2] for r in arrow] + [arrow[0][2]]
    assert all(isinstance(v, dt.datetime) and v.tzinfo is dt.UTC for v in stamps)
    first = snapshot_row_position(_Chunk(schema, arrow).at, 0)
    batch = ReadBatch(schema, arrow, first, 5, "txn")
    made = batch.source_array(1, 2)
    assert batch.arrow is arrow and made is not None and made.to_pylist() == [r[1] for r in ROWS[2:]]
    assert [e.after for e in batch] == list(ROWS) and batch.after(first).arrow is not None
    log = ChunkLog(tmp_path, "p")
    log.write(LoggedChunk(batch, "state"))
    back = log.read()
    assert back is not None and [e.after for e in back.records] == list(ROWS)
    assert [e.position for e in back.records] == [e.position for e in batch]
