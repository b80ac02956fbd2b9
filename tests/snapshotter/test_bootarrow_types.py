"""The columnar read path (SnapshotReader.read_chunk_columns, snapshotter/text_columns.py) gives, for
every type of the capture type table, the binlog decoder's values: the ``r`` row (from the chunk's
Arrow columns) equals the ``u`` event's after image of the same row, type and value, as
test_snapread_types checks for the row path. Each way is forced: Arrow's parsers where they apply,
and the per-value converters for every column (``FORCE_ROW_CONVERTERS``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import pyarrow as pa
import pytest

import snapshotter.text_columns as text_columns
from cdc.core import Op
from cdc.core.schemas import TableRef
from cdc.devstack.connections import StackConnections
from cdc.sources.mariadb import ConnectionSettings, StartAt, ZeroDatePolicy
from sinks.arrow_rows import ArrowRows
from snapshotter.reader import ChunkRead, SnapshotReader
from tests.integration.test_binlog_decoder_differential import EMOJI
from tests.snapshotter.test_snapread_types import _table, _updates

Sql = Callable[..., list[tuple[object, ...]]]


@pytest.fixture(scope="module")
def alltypes(sql: Sql, database: str) -> TableRef:
    return _table(sql, database)


@pytest.fixture
def force_rows() -> Iterator[Callable[[bool], None]]:
    def force(on: bool) -> None:
        text_columns.FORCE_ROW_CONVERTERS = on

    yield force
    text_columns.FORCE_ROW_CONVERTERS = False


def _read(settings: ConnectionSettings, ref: TableRef, policy: ZeroDatePolicy, columns: bool) -> ChunkRead:
    reader = SnapshotReader(settings, policy)
    try:
        return reader.read_chunk_columns(ref, None, 100) if columns else reader.read_chunk(ref, None, 100)
    finally:
        reader.close()


@pytest.mark.parametrize("policy", [ZeroDatePolicy.NULL, ZeroDatePolicy.STRING])
def test_columnar_snapshot_row_equals_update_after_image_for_every_type(
    stack: StackConnections,
    settings: ConnectionSettings,
    sql: Sql,
    alltypes: TableRef,
    policy: ZeroDatePolicy,
    force_rows: Callable[[bool], None],
) -> None:
    rows_path = _read(settings, alltypes, policy, columns=False)
    columnar = _read(settings, alltypes, policy, columns=True)
    force_rows(True)
    forced = _read(settings, alltypes, policy, columns=True)
    force_rows(False)
    if policy is ZeroDatePolicy.NULL:
        # every value fits its column's Arrow type: the chunk is Arrow columns, most parsed by Arrow
        assert isinstance(columnar.rows, ArrowRows) and isinstance(forced.rows, ArrowRows)
        assert columnar.rows.arrays[0].type == pa.int32()
    else:
        # '0000-00-00' kept as text does not fit a date32 column: the chunk falls back to tuples
        assert not isinstance(columnar.rows, ArrowRows)
    assert columnar.last_key == rows_path.last_key == (5,) and columnar.complete
    sql(f"UPDATE {alltypes} SET touched = COALESCE(touched, 0) + 1")
    events = _updates(stack, settings, alltypes, StartAt.at(columnar.at), policy)
    assert [e.op for e in events] == [Op.UPDATE] * 5
    names = columnar.schema.column_names
    assert events[0].schema == columnar.schema
    problems = []
    for label, chunk in (("columnar", columnar), ("forced", forced)):
        assert len(chunk.rows) == 5
        for row, event in zip(chunk.rows, events, strict=True):
            assert event.after is not None
            for name, mine, theirs in zip(names, row, event.after, strict=True):
                if name != "touched" and (type(mine) is not type(theirs) or mine != theirs):
                    problems.append(f"{label} id={row[0]!r} {name}: snapshot={mine!r} binlog={theirs!r}")
                if isinstance(mine, dt.datetime) and mine.tzinfo is not None and mine.tzinfo is not dt.UTC:
                    problems.append(f"{label} {name}: tzinfo {mine.tzinfo!r}")
    assert problems == [], "\n".join(problems)
    by = dict(zip(names, columnar.rows[0], strict=True))
    assert by["biu"] == 2**64 - 1 and by["vc_utf"] == EMOJI


def test_columnar_path_parses_common_columns_natively(
    settings: ConnectionSettings, alltypes: TableRef
) -> None:
    """Which columns Arrow parses (the rest go value by value): not the per-value path everywhere."""
    reader = SnapshotReader(settings, ZeroDatePolicy.NULL)
    try:
        chunk = reader.read_chunk_columns(alltypes, None, 100)
        compiled = reader._dictionary(alltypes)
    finally:
        reader.close()
    assert isinstance(chunk.rows, ArrowRows)
    # ints (11 + id + touched + YEAR), 3 decimals, FLOAT and DOUBLE, DATE, 3 DATETIMEs, 2 TIMESTAMPs,
    # utf8mb4 text (5) + JSON, 4 binary strings, ENUM and SET
    assert compiled.text.fast_columns >= 30, compiled.text.fast_columns
