"""PostgreSQL from Kafka: a batch of chunks collapsed and written column-wise, no object per change.

When every chunk of a batch decoded as Arrow columns (:mod:`cdc.stream.arrow_changes`), each
target table's changes are concatenated in batch order (per key that is per-partition order, the
source's order), collapsed to the last change per key with one Arrow group-by, and written as the
row path writes them: the keys whose last change is a delete by ``DELETE ... USING`` a stage, the
others by ``INSERT ... SELECT ... ON CONFLICT DO UPDATE`` from a stage filled by one CSV COPY. The
CSV carries the values as the envelope spelled them (decimals, dates and times as ISO text, which
PostgreSQL parses to the very values psycopg binds; binary as its base64 text, decoded by
PostgreSQL's ``decode(.., 'base64')``), so nothing is converted in Python.

Anything else goes the sink's per-change path, which is the reference: a small batch (under
``copy_threshold_rows``, where executemany is the quicker), a table whose key is configured
(``key_columns``) or missing, a version that drops columns, float or TIME columns, a truncate fence
above a change, and any value the target would refuse (text over its length or holding NUL: the
per-change path stops or dead-letters it with its message). ``tests/sinks/test_sinkcol_postgres.py``
applies one stream both ways and compares the tables row by row.

SQLite and MariaDB take the same collapse (same fallbacks, but floats too: they bind the
envelope's doubles), and bind the rows from the columns in one executemany each way:
:mod:`sinks.sql.sqlite_columnar` (``tests/sinks/test_sinkcol_sqlite.py``) and
:mod:`sinks.sql.mariadb_columnar` (``tests/sinks/test_sinkcol_mariadb.py``) say how.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import sqlalchemy as sa
from psycopg import sql

from cdc.core.schemas import ArrowKind, TableSchema
from cdc.stream.arrow_changes import ChangeColumns
from cdc.stream.kafka_chunks import ChunkRecords
from sinks.contract import SinkBatch
from sinks.sql import mariadb_columnar, sqlite_columnar
from sinks.sql.type_mapping import Dialect, Family, target_type
from sinks.sql.writer_state import check_writer, merged

if TYPE_CHECKING:
    from sinks.sql.sql_sink import SqlSink

__all__ = ["apply_columns", "column_threshold"]

_KINDS = frozenset(
    {
        ArrowKind.BOOL,
        ArrowKind.INT8,
        ArrowKind.INT16,
        ArrowKind.INT32,
        ArrowKind.INT64,
        ArrowKind.UINT8,
        ArrowKind.UINT16,
        ArrowKind.UINT32,
        ArrowKind.UINT64,
        ArrowKind.STRING,
        ArrowKind.BINARY,
        ArrowKind.DECIMAL,
        ArrowKind.DATE,
        ArrowKind.TIMESTAMP,
        ArrowKind.TIMESTAMP_UTC,
    }
)
_ORDER = "_hw_order"
_stages = itertools.count()


@dataclass(frozen=True, slots=True)
class _TableChanges:
    target: str
    schema: TableSchema
    names: tuple[str, ...]  # the target column of each source column
    # source columns (PostgreSQL: the JSON text forms; else sqlite_columnar.collapse_arrays),
    # then _op, _position and the batch order
    changes: pa.Table


def column_threshold(dialect: Dialect, copy_threshold_rows: int | None) -> int | None:
    """The fewest changes of a batch applied column-wise on ``dialect``; None: never."""
    return copy_threshold_rows


def apply_columns(sink: SqlSink, batch: SinkBatch) -> bool:
    """Apply ``batch`` column-wise; False (nothing done) when the per-change path must."""
    records = batch.records
    threshold = column_threshold(sink.dialect, sink.settings.copy_threshold_rows)
    if not isinstance(records, ChunkRecords) or not batch.state.offsets:
        return False  # not from Kafka
    if threshold is None:
        return False
    if len(records) < threshold:
        return False
    columns = [chunk.columns() for chunk in records.chunks]
    if any(c is None for c in columns) or not _columns_fit(sink, columns):  # type: ignore[arg-type]
        return False
    # the target tables follow the versions first (own transaction), from one decoded change each
    sink._sync_schemas(chunk.decoder.events(chunk.values[:1])[0] for chunk in records.chunks)
    tables = _by_target(sink, columns)  # type: ignore[arg-type]
    if tables is None:
        return False
    engine = sink._require_engine()
    if not sink._row_exists:
        sink._row_exists = sink._book.ensure_row(engine, sink.settings.pipeline)
    with engine.begin() as conn:
        row = sink._book.read(conn, sink.settings.pipeline, lock=True)
        check_writer(sink.name, sink._epoch, row)
        for table in tables:
            fence = row.truncates.get(str(table.schema.ref))
            if fence is not None and _any_below(table.changes, fence.to_string()):
                return False  # rows older than a truncate applied (nothing written yet): per change
        for table in tables:
            _write(
                conn, sink._table(table.target), sink._shapes[table.target].primary_key, table, sink.dialect
            )
        sink._book.write_state(
            conn,
            sink.settings.pipeline,
            merged(row.state, batch.state),
            exists=row.row_exists,
            truncates=None,
        )
    return True


def _any_below(changes: pa.Table, fence: str) -> bool:
    return bool(pc.any(pc.less(changes.column("_position"), fence)).as_py())


def _columns_fit(sink: SqlSink, columns: Sequence[ChangeColumns]) -> bool:
    for c in columns:
        schema = c.schema
        if not schema.primary_key or sink._keys.keyed(schema) is not schema:
            return False  # keyless, or keyed by configuration: the per-change path knows those
        if sink.dialect is not Dialect.POSTGRESQL:
            fits = sqlite_columnar.fits if sink.dialect is Dialect.SQLITE else mariadb_columnar.fits
            if not fits(c):
                return False
            continue
        for i, column in enumerate(schema.columns):
            if column.arrow_type.kind not in _KINDS:
                return False
            target = target_type(column)
            if target.family is Family.TEXT and not _text_fits(c.json_image[i], target.length):
                return False
    return True


def _text_fits(values: pa.Array, limit: int | None) -> bool:
    """What the per-change path's text check passes: no NUL (PostgreSQL refuses it in text) and at
    most ``limit`` characters; JSON text is valid UTF-8 by construction."""
    if pc.any(pc.match_substring(values, "\x00")).as_py():
        return False
    return limit is None or not pc.any(pc.greater(pc.utf8_length(values), limit)).as_py()


def _by_target(sink: SqlSink, columns: Sequence[ChangeColumns]) -> list[_TableChanges] | None:
    """Each target table's changes in batch order; None when a version's columns do not all map."""
    parts: dict[str, list[pa.Table]] = {}
    shapes: dict[str, tuple[TableSchema, tuple[str, ...]]] = {}
    counts: dict[str, int] = {}
    for c in columns:
        target = sink.target_name(c.schema.ref)
        shape = sink._shapes.get(target)
        mapping = shape.mapping(c.schema.version) if shape is not None else None
        if mapping is None or any(name is None for name in mapping):
            return None  # a table recorded by an older release, or dropped columns: per change
        names = tuple(str(name) for name in mapping)
        known = shapes.setdefault(target, (c.schema, names))
        if known[1] != names:
            return None  # two shapes of one table in a batch
        n, order = len(c), counts.get(target, 0)
        counts[target] = order + n
        values = c.json_image if sink.dialect is Dialect.POSTGRESQL else sqlite_columnar.collapse_arrays(c)
        arrays = [*values, c.op, c.position, pa.array(range(order, order + n), pa.int64())]
        labels = [f"c{i}" for i in range(len(values))] + ["_op", "_position", _ORDER]
        parts.setdefault(target, []).append(pa.Table.from_arrays(arrays, names=labels))
    out = []
    for target, tables in parts.items():
        schema, names = shapes[target]
        out.append(_TableChanges(target, schema, names, pa.concat_tables(tables)))
    return out


def _last_per_key(data: pa.Table, keys: list[str]) -> pa.Table:
    """The last change of each key: ``data`` sorted by key, the latest first within a key, and the
    first row of each run of equal keys kept. Not ``Table.group_by``: it loads Arrow's Acero and
    dataset modules, ~15 MiB of `cdc sink`'s RSS, for one aggregate over a batch's few thousand rows.
    A one-column key that no change repeats (an insert-only batch) is kept as it is: counting the
    distinct keys costs a quarter of the sort and take, which copy every column."""
    if len(keys) == 1 and pc.count_distinct(data.column(keys[0]), mode="all").as_py() == data.num_rows:
        return data
    ranked = data.take(
        pc.sort_indices(data, sort_keys=[(k, "ascending") for k in keys] + [(_ORDER, "descending")])
    )
    n = ranked.num_rows
    if n < 2:
        return ranked
    starts: pa.ChunkedArray | None = None  # row i + 1 starts a new key
    for key in keys:
        column = ranked.column(key)
        after, before = column.slice(1), column.slice(0, n - 1)
        # a null key (none in a MariaDB primary key) equals only another null, as in a group-by
        differs = pc.or_(
            pc.fill_null(pc.not_equal(after, before), False), pc.xor(pc.is_null(after), pc.is_null(before))
        )
        starts = differs if starts is None else pc.or_(starts, differs)
    assert starts is not None
    return ranked.filter(pa.chunked_array([pa.array([True]), *starts.chunks], pa.bool_()))


def _write(
    conn: sa.Connection, table: sa.Table, primary_key: Sequence[str], changes: _TableChanges, dialect: Dialect
) -> None:
    data = changes.changes
    position_of = {name: i for i, name in enumerate(changes.names)}
    keys = [f"c{position_of[k]}" for k in primary_key]
    rows = _last_per_key(data, keys)
    deleted = pc.equal(rows.column("_op"), "d")
    if dialect is not Dialect.POSTGRESQL:
        write = sqlite_columnar.write_rows if dialect is Dialect.SQLITE else mariadb_columnar.write_rows
        write(conn, table, primary_key, changes.names, changes.schema.columns, rows, deleted)
        return
    kinds = [c.arrow_type.kind for c in changes.schema.columns]
    if pc.any(deleted).as_py():
        gone = rows.filter(deleted).select(keys)
        key_kinds = [kinds[position_of[k]] for k in primary_key]
        stage = _stage(conn, table, list(primary_key), key_kinds, gone)
        match = sql.SQL(" AND ").join(
            sql.SQL("t.{c} = {v}").format(c=sql.Identifier(k), v=_value(f"s.{_quote(k)}", kind))
            for k, kind in zip(primary_key, key_kinds, strict=True)
        )
        _execute(
            conn,
            sql.SQL("DELETE FROM {t} t USING {s} s WHERE {m}").format(t=_target(table), s=stage, m=match),
        )
    kept = rows.filter(pc.invert(deleted))
    if kept.num_rows == 0:
        return
    names = list(changes.names)
    stage = _stage(conn, table, names, kinds, kept.select([f"c{i}" for i in range(len(names))]))
    selected = sql.SQL(", ").join(_value(_quote(n), kind) for n, kind in zip(names, kinds, strict=True))
    rest = [n for n in names if n not in primary_key]
    action: sql.Composable
    if rest:
        action = sql.SQL("DO UPDATE SET {}").format(
            sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(n)) for n in rest)
        )
    else:
        action = sql.SQL("DO NOTHING")
    _execute(
        conn,
        sql.SQL("INSERT INTO {t} ({cols}) SELECT {sel} FROM {s} ON CONFLICT ({pk}) {action}").format(
            t=_target(table),
            cols=sql.SQL(", ").join(sql.Identifier(n) for n in names),
            sel=selected,
            s=stage,
            pk=sql.SQL(", ").join(sql.Identifier(k) for k in primary_key),
            action=action,
        ),
    )


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _value(column: str, kind: ArrowKind) -> sql.Composable:
    """A stage column as the target's value: base64 text decoded, the rest cast by the target."""
    if kind is ArrowKind.BINARY:
        return sql.SQL("decode({}, 'base64')").format(sql.SQL(column))
    return sql.SQL(column)


def _target(table: sa.Table) -> sql.Composable:
    return sql.Identifier(table.schema, table.name) if table.schema else sql.Identifier(table.name)


def _stage(
    conn: sa.Connection, table: sa.Table, names: list[str], kinds: list[ArrowKind], rows: pa.Table
) -> sql.Composable:
    """A temporary table of ``names`` (binary columns as text) filled from ``rows`` by CSV COPY."""
    stage = sql.Identifier(f"_hw_stage_col_{next(_stages)}")
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(
            sql.Identifier(n),
            sql.SQL("text") if kind is ArrowKind.BINARY else sql.SQL(_type_sql(conn, table, n)),
        )
        for n, kind in zip(names, kinds, strict=True)
    )
    _execute(conn, sql.SQL("CREATE TEMPORARY TABLE {} ({}) ON COMMIT DROP").format(stage, columns))
    out = io.BytesIO()
    # "needed" quoting quotes empty strings, so that only NULL is an unquoted empty field
    pa_csv.write_csv(rows, out, pa_csv.WriteOptions(include_header=False, quoting_style="needed"))
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT CSV)").format(
        stage, sql.SQL(", ").join(sql.Identifier(n) for n in names)
    )
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur, cur.copy(copy_sql) as copy:
        copy.write(out.getvalue())
    return stage


def _type_sql(conn: sa.Connection, table: sa.Table, name: str) -> str:
    return str(table.c[name].type.compile(dialect=conn.dialect))


def _execute(conn: sa.Connection, statement: sql.Composable) -> None:
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur:
        cur.execute(statement)
