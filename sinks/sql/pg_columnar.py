"""PostgreSQL's share of the column-wise apply: one target table's collapsed rows written by COPY.

Per table and batch, once collapsed to the last change per key (:mod:`sinks.sql.columnar_apply`):
the keys whose last change is a delete go by ``DELETE ... USING`` a stage; the keys whose last change
is an insert (``c``) are COPYed straight into the target; the rest (updates, snapshot reads) go by
``INSERT ... SELECT ... ON CONFLICT DO UPDATE`` from a stage. A straight COPY costs the server about
half of what the stage and the upsert do (measured in benchmarks/results/latest.md, section pgapply),
and a stream of inserts is the common case. An insert whose key the table already holds (a replay
after a bootstrap, a key deleted and inserted again in one batch) fails the COPY with a unique
violation: :class:`KeysExist` is raised, the caller rolls the whole transaction back and applies the
batch again by upsert alone. No savepoint: it would cost round trips on every batch for a rare case.

The stages are temporary tables made once per connection and table shape (``ON COMMIT DELETE
ROWS``), not per batch: creating and dropping a table per batch writes PostgreSQL's catalog each
time. Every value travels as the text PostgreSQL's input function of the target column reads
(binary as ``\\x`` hex), so the stage's columns have the target's types and a straight COPY reads the
very same CSV.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import sqlalchemy as sa
from psycopg import sql

from cdc.core.schemas import ArrowType
from sinks.sql.pg_binary_copy import rows_binary
from sinks.sql.pg_copy_ahead import CopyAhead
from sinks.sql.pg_stages import KeysExist, Stages, execute

__all__ = ["KeysExist", "Stages", "bytea_hex", "write_table"]


def bytea_hex(values: pa.Array) -> pa.Array:
    """Binary values as PostgreSQL's hex input for bytea (``\\x``, two digits a byte), null kept.

    The hex of the values' concatenation is the concatenation of their hex: one C call for the
    whole column, each value's offsets doubled."""
    n = len(values)
    if values.offset:
        values = pa.concat_arrays([values])  # offsets from zero
    validity, offsets_buffer, data_buffer = values.buffers()
    offsets = pa.Array.from_buffers(pa.int32(), n + 1, [None, offsets_buffer])
    first, last = offsets[0].as_py(), offsets[n].as_py()
    digits = memoryview(data_buffer)[first:last].hex().encode() if last > first else b""
    doubled = pc.multiply(pc.subtract(offsets, first), 2).cast(pa.int32())
    hexed = pa.Array.from_buffers(
        pa.string(), n, [validity, doubled.buffers()[1], pa.py_buffer(digits)], values.null_count
    )
    prefixed: pa.Array = pc.binary_replace_slice(hexed, 0, 0, "\\x")
    return prefixed


def write_table(
    conn: sa.Connection,
    table: sa.Table,
    primary_key: Sequence[str],
    names: Sequence[str],
    rows: pa.Table,
    direct: bool,
    binary: Sequence[ArrowType] | None = None,
    ahead: CopyAhead | None = None,
) -> None:
    """``rows``: one per key (``c0``.. the values, ``_op``); ``direct``: inserts by COPY.
    ``binary``: the column types of ``names`` when the values are typed and go by binary COPY, None
    when they are text for a CSV COPY. ``ahead``: ``rows``' binary COPY streams, made before the
    transaction (:mod:`sinks.sql.pg_copy_ahead`): sent as they are where they fit the write."""
    stages = Stages.of(conn)
    if ahead is not None and binary is not None and (direct or ahead.every_inserted):
        _write_ahead(conn, table, primary_key, names, ahead, direct)
        return
    keys = [f"c{names.index(k)}" for k in primary_key]
    key_types = None if binary is None else [binary[names.index(k)] for k in primary_key]
    values = [f"c{i}" for i in range(len(names))]
    op = rows.column("_op")
    deleted = pc.equal(op, "d")
    kept = rows
    if pc.any(deleted).as_py():
        stage = sql.Identifier(stages.stage(conn, table, "delete", primary_key))
        _copy(conn, stage, primary_key, rows.filter(deleted).select(keys), key_types)
        match = sql.SQL(" AND ").join(
            sql.SQL("t.{c} = s.{c}").format(c=sql.Identifier(k)) for k in primary_key
        )
        execute(
            conn,
            sql.SQL("DELETE FROM {t} t USING {s} s WHERE {m}").format(t=_target(table), s=stage, m=match),
        )
        kept = rows.filter(pc.invert(deleted))
    if direct and kept.num_rows:
        inserted = pc.equal(kept.column("_op"), "c")
        every = pc.all(inserted).as_py()  # the common case: no filter, which copies every column
        fresh = kept if every else kept.filter(inserted)
        if fresh.num_rows:
            try:
                _copy(conn, _target(table), names, fresh.select(values), binary)
            except psycopg.errors.UniqueViolation as exc:
                raise KeysExist(table.name) from exc
            kept = kept.slice(0, 0) if every else kept.filter(pc.invert(inserted))
    if kept.num_rows == 0:
        return
    stage = sql.Identifier(stages.stage(conn, table, "upsert", names))
    _copy(conn, stage, names, kept.select(values), binary)
    _upsert(conn, table, primary_key, names, stage)


def _write_ahead(
    conn: sa.Connection,
    table: sa.Table,
    primary_key: Sequence[str],
    names: Sequence[str],
    ahead: CopyAhead,
    direct: bool,
) -> None:
    """:func:`write_table` of rows none of which is deleted, from their streams made ahead: the same
    statements and COPY bytes as there (``direct``, or every row an insert)."""
    if direct and ahead.inserted:
        try:
            _send_once(conn, _target(table), names, ahead.inserts)
        except psycopg.errors.UniqueViolation as exc:
            raise KeysExist(table.name) from exc
        if ahead.every_inserted:
            return
    upserted = ahead.others if direct else ahead.inserts  # not direct: every row is an insert
    if not (ahead.other_rows if direct else ahead.inserted):
        return
    stage = sql.Identifier(Stages.of(conn).stage(conn, table, "upsert", names))
    _send_once(conn, stage, names, upserted)
    _upsert(conn, table, primary_key, names, stage)


def _send_once(
    conn: sa.Connection, into: sql.Composable, names: Sequence[str], stream: list[bytes | memoryview]
) -> None:
    """A stream made ahead, sent and then let go (the batch holds it until the daemon lets it go): a
    retry of the batch encodes again (columnar_apply.apply_columns drops the streams for it)."""
    try:
        _send(conn, into, names, stream)
    finally:
        stream.clear()


def _upsert(
    conn: sa.Connection,
    table: sa.Table,
    primary_key: Sequence[str],
    names: Sequence[str],
    stage: sql.Identifier,
) -> None:
    """The stage's rows into the table, each key's values replacing the row it holds."""
    rest = [n for n in names if n not in primary_key]
    action: sql.Composable
    if rest:
        action = sql.SQL("DO UPDATE SET {}").format(
            sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(n)) for n in rest)
        )
    else:
        action = sql.SQL("DO NOTHING")
    columns = sql.SQL(", ").join(sql.Identifier(n) for n in names)
    execute(
        conn,
        sql.SQL("INSERT INTO {t} ({cols}) SELECT {cols} FROM {s} ON CONFLICT ({pk}) {action}").format(
            t=_target(table),
            cols=columns,
            s=stage,
            pk=sql.SQL(", ").join(sql.Identifier(k) for k in primary_key),
            action=action,
        ),
    )


def _copy(
    conn: sa.Connection,
    into: sql.Composable,
    names: Sequence[str],
    rows: pa.Table,
    binary: Sequence[ArrowType] | None,
) -> None:
    """``rows`` (columns in the order of ``names``) into ``into`` by one COPY: binary when
    ``binary`` gives their types, else CSV."""
    columns = sql.SQL(", ").join(sql.Identifier(n) for n in names)
    raw = conn.connection.driver_connection
    assert raw is not None
    if binary is not None:
        _send(conn, into, names, rows_binary(rows.columns, binary))
        return
    out = io.BytesIO()
    # "needed" quoting quotes empty strings, so that only NULL is an unquoted empty field
    pa_csv.write_csv(rows, out, pa_csv.WriteOptions(include_header=False, quoting_style="needed"))
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT CSV)").format(into, columns)
    with raw.cursor() as cur, cur.copy(copy_sql) as copy:
        copy.write(out.getbuffer())


def _send(
    conn: sa.Connection, into: sql.Composable, names: Sequence[str], pieces: Iterable[bytes | memoryview]
) -> None:
    """A binary COPY stream (header, rows, trailer) into ``into``'s ``names``, piece by piece."""
    columns = sql.SQL(", ").join(sql.Identifier(n) for n in names)
    raw = conn.connection.driver_connection
    assert raw is not None
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(into, columns)
    with raw.cursor() as cur, cur.copy(copy_sql) as copy:
        for piece in pieces:
            copy.write(piece)


def _target(table: sa.Table) -> sql.Composable:
    return sql.Identifier(table.schema, table.name) if table.schema else sql.Identifier(table.name)
