"""SQL sinks from Kafka (or embedded chunks): a batch collapsed and written column-wise, no object per change.

When every chunk of a batch decoded as Arrow columns (:mod:`cdc.stream.arrow_changes`), each
target table's changes are concatenated in batch order (per key that is per-partition order, the
source's order), collapsed to the last change per key with one Arrow group-by, and written as the
row path writes them: the keys whose last change is a delete by ``DELETE ... USING`` a stage, the
inserts by a COPY straight into the table, the others by ``INSERT ... SELECT ... ON CONFLICT DO
UPDATE`` from a stage (:mod:`sinks.sql.pg_columnar`; a batch whose inserts meet keys the table holds
is rolled back and written again by upsert). The CSV carries the values as the envelope spelled them
(decimals, dates and times as ISO text, which PostgreSQL parses to the very values psycopg binds),
binary as PostgreSQL's hex text, so no value is converted one by one in Python.

Anything else goes the sink's per-change path, which is the reference: a small batch (under
``copy_threshold_rows``, 100 by default: below it the statements' fixed costs weigh more), a
table whose key is configured (``key_columns``) or missing, a version that drops columns, float or
TIME columns, a truncate fence above a change, and any value the target would refuse (text over
its length or holding NUL: the per-change path stops or dead-letters it with its message).
``tests/sinks/test_sinkcol_postgres.py``
applies one stream both ways and compares the tables row by row.

Embedded mode hands the same chunks, in one position order and without Kafka offsets: a batch
holding any change at or below the position the sink holds goes the per-change path (which skips
those), any other is applied here and stores its own state (``tests/sinks/test_pgsink_embedded_columns.py``).

SQLite and MariaDB take the same collapse (same fallbacks, but floats too: they bind the
envelope's doubles), and bind the rows from the columns in one executemany each way:
:mod:`sinks.sql.sqlite_columnar` (``tests/sinks/test_sinkcol_sqlite.py``) and
:mod:`sinks.sql.mariadb_columnar` (``tests/sinks/test_sinkcol_mariadb.py``) say how.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from cdc.core.events import ChangeEvent
from cdc.core.schemas import ArrowKind, ArrowType, TableSchema
from cdc.stream.arrow_changes import INT_KINDS, ChangeColumns
from cdc.stream.kafka_chunks import ChunkRecords
from sinks.contract import AppliedState, SinkBatch
from sinks.sql import mariadb_columnar, pg_binary_copy, sqlite_columnar
from sinks.sql.pg_copy_ahead import CopyAhead, encode_ahead
from sinks.sql.positions_table import Held, TableShape
from sinks.sql.schema_follow import unfollowed
from sinks.sql.type_mapping import Dialect, Family, target_type
from sinks.sql.writer_state import check_writer, merged

if TYPE_CHECKING:
    from sinks.sql import pg_columnar
    from sinks.sql.sql_sink import SqlSink

# pg_columnar and pg_session import psycopg (~9 MiB of RSS with psycopg_binary's libraries), which a
# MariaDB or SQLite sink never uses: they are imported in the PostgreSQL branches below.

__all__ = ["UPSERT_BATCHES", "Prepared", "apply_columns", "column_threshold", "copy_ahead", "prepare"]

_KINDS = frozenset(
    {
        ArrowKind.BOOL,
        *INT_KINDS,
        ArrowKind.STRING,
        ArrowKind.BINARY,
        ArrowKind.DECIMAL,
        ArrowKind.DATE,
        ArrowKind.TIMESTAMP,
        ArrowKind.TIMESTAMP_UTC,
    }
)
_ORDER = "_hw_order"
# after a batch whose inserts met keys the table held (a replay), its next batches go by upsert
UPSERT_BATCHES = 16

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _TableChanges:
    target: str
    schema: TableSchema
    names: tuple[str, ...]  # the target column of each source column
    # source columns (PostgreSQL: the typed image if ``binary`` is set, else the JSON text forms;
    # else sqlite_columnar.collapse_arrays), then _op, _position and the batch order
    changes: pa.Table
    last: pa.Table  # ``changes``' last change per key (_last_per_key)
    # PostgreSQL: the target column types when every column goes by binary COPY (pg_binary_copy)
    binary: tuple[ArrowType, ...] | None = None
    # PostgreSQL, embedded: ``last``'s COPY streams made before the transaction (copy_ahead)
    ahead: CopyAhead | None = None


def column_threshold(dialect: Dialect, copy_threshold_rows: int | None) -> int | None:
    """The fewest changes of a batch applied column-wise on ``dialect``; None: never."""
    return copy_threshold_rows


@dataclass(slots=True)
class Prepared:
    """What :func:`apply_columns` works out from a batch before its transaction, from the batch alone
    and the sink's table shapes: made by :func:`prepare` on the embedded daemon's thread before it
    hands the batch over, so that the apply thread (the chain PostgreSQL waits on) does not make it
    waiting for the GIL behind capture; else on the apply thread, as before."""

    batch: SinkBatch
    columns: list[ChangeColumns] | None  # None: the batch goes the per-change path
    firsts: list[ChangeEvent]  # one change per chunk: the versions the schema sync follows
    synced: bool  # no version needed the sync when the shapes below were read
    tables: list[_TableChanges] | None  # None: made after the sync (a version did not map yet)
    shapes: dict[str, TableShape | None]  # target -> the shape read for the above (or None)

    def current(self, sink: SqlSink) -> bool:
        """The shapes read are still the sink's: the answers above hold (shapes are immutable)."""
        held = sink._shapes
        return all(held.get(target) is shape for target, shape in self.shapes.items())


def prepare(sink: SqlSink, batch: SinkBatch) -> Prepared:
    """The batch's columns checked, the schema sync's need, each target table's changes and their
    last change per key; ``columns`` None if the per-change path must take the batch."""
    none = Prepared(batch, None, [], False, None, {})
    records = batch.records
    threshold = column_threshold(sink.dialect, sink.settings.copy_threshold_rows)
    if not isinstance(records, ChunkRecords):
        return none  # neither from Kafka nor embedded chunks
    if threshold is None:
        return none
    if len(records) < threshold:
        return none
    columns = [chunk.columns() for chunk in records.chunks]
    if any(c is None for c in columns) or not _columns_fit(sink, columns):  # type: ignore[arg-type]
        return none
    firsts = [chunk.decoder.events(chunk.values[:1])[0] for chunk in records.chunks]
    shapes: dict[str, TableShape | None] = {}
    synced = not unfollowed(sink, firsts, shapes)
    tables = _by_target(sink, columns, shapes) if synced else None  # type: ignore[arg-type]
    return Prepared(batch, columns, firsts, synced, tables, shapes)  # type: ignore[arg-type]


def copy_ahead(sink: SqlSink, ready: Prepared) -> None:
    """PostgreSQL: each table's binary COPY streams made now, for the apply to send
    (:mod:`sinks.sql.pg_copy_ahead`), except for a table going by upsert alone after a replay."""
    if sink.dialect is not Dialect.POSTGRESQL or ready.tables is None:
        return
    upserting = sink._pg_upserting  # read from another thread: at worst a stream made for nothing
    ready.tables = [
        t
        if t.binary is None or upserting.get(t.target)
        else replace(t, ahead=encode_ahead(t.last, t.names, t.binary))
        for t in ready.tables
    ]


def apply_columns(sink: SqlSink, batch: SinkBatch) -> bool:
    """Apply ``batch`` column-wise; False (nothing done) when the per-change path must."""
    ready = sink.take_prepared(batch)
    ready = prepare(sink, batch) if ready is None else ready
    columns = ready.columns
    if columns is None:
        return False
    if not (ready.synced and ready.current(sink)):
        # the target tables follow the versions first (own transaction), from one decoded change each
        sink._sync_schemas(ready.firsts)
    tables = ready.tables if ready.tables is not None and ready.current(sink) else _by_target(sink, columns)
    if tables is None:
        return False
    engine = sink._require_engine()
    if not sink._row_exists:
        sink._row_exists = sink._book.ensure_row(engine, sink.settings.pipeline)
    if sink.dialect is not Dialect.POSTGRESQL:
        return _transaction(sink, engine, batch, tables, frozenset())
    from sinks.sql import pg_columnar

    upserting = sink._pg_upserting  # target -> batches it still goes by upsert alone
    direct = frozenset(t.target for t in tables if not upserting.get(t.target))
    for t in tables:
        if upserting.get(t.target):
            upserting[t.target] -= 1
    try:
        return _transaction(sink, engine, batch, tables, direct)
    except pg_columnar.KeysExist as exc:  # rolled back: nothing of the batch was written
        log.info("%s: %s; the batch goes again, by upsert", sink.name, exc)
        upserting[exc.target] = UPSERT_BATCHES
        # the COPY streams made ahead were let go as they were sent: encoded again, as before
        tables = [replace(t, ahead=None) if t.ahead is not None else t for t in tables]
        return _transaction(sink, engine, batch, tables, frozenset())


def _transaction(
    sink: SqlSink, engine: sa.Engine, batch: SinkBatch, tables: list[_TableChanges], direct: frozenset[str]
) -> bool:
    """The batch's tables and the positions row, in one transaction; ``direct``: the targets whose
    inserts are COPYed straight in (PostgreSQL). With ``defer_commit`` (PostgreSQL) the commit's
    result is read at the sink's next call (sinks/sql/pg_deferred_commit.py)."""
    sink.settle_commit()  # the batch before's: the offsets merged below must be committed ones
    pg = sink.dialect is Dialect.POSTGRESQL
    if pg and sink.settings.defer_commit:
        return _deferred_transaction(sink, engine, batch, tables, direct)
    stages: pg_columnar.Stages | None = None
    try:
        with engine.begin() as conn:
            if pg:
                from sinks.sql import pg_columnar, pg_session

                stages = pg_columnar.Stages.of(conn)
                row = pg_session.read_locked(conn, sink._book, sink.settings.pipeline)
            else:
                row = sink._book.read(conn, sink.settings.pipeline, lock=True)
            state = _write_batch(sink, conn, row, batch, tables, direct)
            if state is None:
                return False
            if pg:
                pg_session.commit_with_state(conn, sink._book, sink.settings.pipeline, state, row.row_exists)
            else:
                sink._book.write_state(conn, sink.settings.pipeline, state, exists=row.row_exists)
    except BaseException:
        if stages is not None:
            stages.forget()  # the stages this transaction made went with its rollback
        raise
    if stages is not None:
        stages.confirm()
    return True


def _deferred_transaction(
    sink: SqlSink, engine: sa.Engine, batch: SinkBatch, tables: list[_TableChanges], direct: frozenset[str]
) -> bool:
    """:func:`_transaction` on PostgreSQL, returning once the write of the positions row and the
    ``COMMIT`` are sent: the sink holds the connection until it reads their results."""
    from sinks.sql import pg_columnar, pg_session

    conn = engine.connect()
    transaction = conn.begin()
    stages = pg_columnar.Stages.of(conn)
    try:
        row = pg_session.read_locked(conn, sink._book, sink.settings.pipeline)
        state = _write_batch(sink, conn, row, batch, tables, direct)
        if state is not None:
            settled = stages.confirm_if  # the stages this transaction made stay if it commits
            sink.pending_commit = pg_session.send_commit_with_state(
                conn, transaction, sink._book, sink.settings.pipeline, state, row.row_exists, settled
            )
            return True
    except BaseException:
        stages.forget()  # the stages this transaction made go with its rollback
        with conn:
            transaction.rollback()
        raise
    with conn:  # nothing written: per change
        transaction.rollback()
    return False


def _write_batch(
    sink: SqlSink,
    conn: sa.Connection,
    row: Held,
    batch: SinkBatch,
    tables: list[_TableChanges],
    direct: frozenset[str],
) -> AppliedState | None:
    """The batch's tables written under the positions row's lock; the state to store with them.
    None: nothing written, the batch goes the per-change path."""
    check_writer(sink.name, sink._epoch, row)
    embedded = not batch.state.offsets  # embedded: one position order, no Kafka offsets
    if embedded and row.state is not None:
        held = row.state.position.to_string()
        if any(_any_below(table.changes, held, inclusive=True) for table in tables):
            return None  # some already applied (nothing written yet): per change, which skips them
    for table in tables:
        fence = row.truncates.get(str(table.schema.ref))
        if fence is not None and _any_below(table.changes, fence.to_string()):
            return None  # rows older than a truncate applied (nothing written yet): per change
    for table in tables:
        target = sink._table(table.target)
        pk = sink._shapes[table.target].primary_key
        _write(conn, target, pk, table, sink.dialect, table.target in direct)
    return batch.state if embedded else merged(row.state, batch.state)


def _any_below(changes: pa.Table, fence: str, inclusive: bool = False) -> bool:
    """Whether a change's position is below ``fence`` (or at it): the text forms sort as positions."""
    below = pc.less_equal if inclusive else pc.less
    return bool(pc.any(below(changes.column("_position"), fence)).as_py())


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
    most ``limit`` characters; JSON text is valid UTF-8 by construction. A value has at least as
    many bytes as characters, so the characters are counted only when some value's bytes exceed
    ``limit``."""
    if _holds_nul(values):
        return False
    if limit is None or not pc.any(pc.greater(pc.binary_length(values), limit)).as_py():
        return True
    return not pc.any(pc.greater(pc.utf8_length(values), limit)).as_py()


def _holds_nul(values: pa.Array) -> bool:
    """Whether a NUL byte is among the values' bytes: one ``bytes.find`` over the data buffer
    (``match_substring`` searched each value on its own: 2 us per value of 200 bytes). Bytes under
    a null slot count too: such a chunk goes the per-change way, which is never wrong."""
    if values.type != pa.string():
        return bool(pc.any(pc.match_substring(values, "\x00")).as_py())
    _validity, offsets, data = values.buffers()
    if data is None or len(values) == 0:
        return False
    bounds = memoryview(offsets).cast("i")
    first, last = bounds[values.offset], bounds[values.offset + len(values)]
    found: int = data.slice(first, last - first).to_pybytes().find(b"\x00")
    return found != -1


def _by_target(
    sink: SqlSink, columns: Sequence[ChangeColumns], read: dict[str, TableShape | None] | None = None
) -> list[_TableChanges] | None:
    """Each target table's changes in batch order, and their last change per key; None when a
    version's columns do not all map. ``read``: gets each target's shape as read here."""
    chunks: dict[str, list[ChangeColumns]] = {}
    shapes: dict[str, tuple[TableSchema, tuple[str, ...], TableShape]] = {}
    for c in columns:
        target = sink.target_name(c.schema.ref)
        shape = sink._shapes.get(target)
        if read is not None:
            read[target] = shape
        mapping = shape.mapping(c.schema.version) if shape is not None else None
        if shape is None or mapping is None or any(name is None for name in mapping):
            return None  # a table recorded by an older release, or dropped columns: per change
        names = tuple(str(name) for name in mapping)
        known = shapes.setdefault(target, (c.schema, names, shape))
        if known[1] != names or known[2] is not shape:
            return None  # two shapes of one table in a batch (or it changed meanwhile)
        chunks.setdefault(target, []).append(c)
    out = []
    for target, parts in chunks.items():
        schema, names, shape = shapes[target]
        binary = _binary_types(shape, names, parts) if sink.dialect is Dialect.POSTGRESQL else None
        tables, order = [], 0
        for c in parts:
            n = len(c)
            if binary is not None:
                values: Sequence[pa.Array] = c.image
            elif sink.dialect is Dialect.POSTGRESQL:
                values = _pg_texts(c)
            else:
                values = sqlite_columnar.collapse_arrays(c)
            arrays = [*values, c.op, c.position, _ordinals(order, n)]
            labels = [f"c{i}" for i in range(len(values))] + ["_op", "_position", _ORDER]
            tables.append(pa.Table.from_arrays(arrays, names=labels))
            order += n
        data = pa.concat_tables(tables)
        position_of = {name: i for i, name in enumerate(names)}
        last = _last_per_key(data, [f"c{position_of[k]}" for k in shape.primary_key])
        out.append(_TableChanges(target, schema, names, data, last, binary))
    return out


_ORDINALS: list[pa.Array] = []


def _ordinals(start: int, n: int) -> pa.Array:
    """start, start + 1, ..., as int64: a slice of one array kept for the largest batch (built from
    a Python range each time, they cost ~0.2 ms per 5,000 changes). Two threads may call it at once
    (embedded: the daemon's prepare and the apply thread): each slices the array it checked."""
    held = _ORDINALS[0] if _ORDINALS else None
    if held is None or len(held) < start + n:
        held = pa.array(range(max(2 * (start + n), 16_384)), pa.int64())
        _ORDINALS[:] = [held]
    return held.slice(start, n)


def _binary_types(
    shape: TableShape, names: tuple[str, ...], parts: Sequence[ChangeColumns]
) -> tuple[ArrowType, ...] | None:
    """The target's column types if every chunk's columns go by binary COPY into them, else None."""
    types = []
    for name in names:
        column = shape.column(name)
        if column is None:
            return None
        types.append(column.arrow_type)
    for c in parts:
        sources = (column.arrow_type for column in c.schema.columns)
        if not all(pg_binary_copy.encodable(s, t) for s, t in zip(sources, types, strict=True)):
            return None
    return tuple(types)


def _pg_texts(c: ChangeColumns) -> list[pa.Array]:
    """The values as PostgreSQL's input functions read them: the envelope's texts, binary as hex."""
    from sinks.sql import pg_columnar

    return [
        pg_columnar.bytea_hex(image) if column.arrow_type.kind is ArrowKind.BINARY else text
        for column, image, text in zip(c.schema.columns, c.image, c.json_image, strict=True)
    ]


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
    conn: sa.Connection,
    table: sa.Table,
    primary_key: Sequence[str],
    changes: _TableChanges,
    dialect: Dialect,
    direct: bool,
) -> None:
    rows = changes.last
    if dialect is Dialect.POSTGRESQL:
        from sinks.sql import pg_columnar

        pg_columnar.write_table(
            conn, table, primary_key, changes.names, rows, direct, changes.binary, changes.ahead
        )
        return
    deleted = pc.equal(rows.column("_op"), "d")
    write = sqlite_columnar.write_rows if dialect is Dialect.SQLITE else mariadb_columnar.write_rows
    write(conn, table, primary_key, changes.names, changes.schema.columns, rows, deleted)
