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
very same CSV (or, typed, the same binary rows: :mod:`sinks.sql.pg_binary_copy`).

A batch is planned first (:func:`plan_table`: what each COPY carries, nothing sent) and then run
(:func:`run_steps`): a COPY's rows are built while PostgreSQL still reads the previous COPY's, so
that the sink thread's CPU and the server's overlap instead of taking turns.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import sqlalchemy as sa
from psycopg import sql

from cdc.core.schemas import ArrowType
from sinks.sql.pg_binary_copy import rows_binary
from sinks.sql.pg_stages import KeysExist, Stages, execute

__all__ = ["CopyStep", "KeysExist", "Stages", "bytea_hex", "plan_table", "run_steps", "write_table"]


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


@dataclass(slots=True)
class CopyStep:
    """One COPY of a batch's table: into the table itself (``purpose`` None: a batch's inserts, a
    unique violation is :class:`KeysExist`) or into the session's stage for ``purpose``, then the
    statement ``then`` builds from the stage's name. The payload is built by :meth:`encode`, which
    :func:`run_steps` calls while PostgreSQL still reads the step before's rows."""

    table: sa.Table
    purpose: str | None
    names: Sequence[str]
    rows: pa.Table
    binary: Sequence[ArrowType] | None
    then: Callable[[sql.Identifier], sql.Composable] | None = None
    payload: list[bytes | memoryview] | None = None

    def encode(self) -> None:
        if self.payload is None:
            self.payload = list(_encoded(self.rows, self.binary))
            self.rows = self.rows.slice(0, 0)  # the payload holds them now


def plan_table(
    table: sa.Table,
    primary_key: Sequence[str],
    names: Sequence[str],
    rows: pa.Table,
    direct: bool,
    binary: Sequence[ArrowType] | None = None,
) -> list[CopyStep]:
    """The COPYs (and statements after them) that write ``rows`` into ``table``, nothing sent yet.

    ``rows``: one per key (``c0``.. the values, ``_op``); ``direct``: inserts by COPY straight into
    the table. ``binary``: the column types of ``names`` when the values are typed and go by binary
    COPY, None when they are text for a CSV COPY. A key has one row, so the deletes, the inserts and
    the upserts touch different keys and their order does not matter."""
    keys = [f"c{names.index(k)}" for k in primary_key]
    key_types = None if binary is None else [binary[names.index(k)] for k in primary_key]
    values = [f"c{i}" for i in range(len(names))]
    steps: list[CopyStep] = []
    op = rows.column("_op")
    deleted = pc.equal(op, "d")
    kept = rows
    if pc.any(deleted).as_py():
        match = sql.SQL(" AND ").join(
            sql.SQL("t.{c} = s.{c}").format(c=sql.Identifier(k)) for k in primary_key
        )
        delete = sql.SQL("DELETE FROM {t} t USING {s} s WHERE {m}")
        steps.append(
            CopyStep(
                table, "delete", primary_key, rows.filter(deleted).select(keys), key_types,
                lambda stage: delete.format(t=_target(table), s=stage, m=match),
            )
        )  # fmt: skip
        kept = rows.filter(pc.invert(deleted))
    if direct and kept.num_rows:
        inserted = pc.equal(kept.column("_op"), "c")
        every = pc.all(inserted).as_py()  # the common case: no filter, which copies every column
        fresh = kept if every else kept.filter(inserted)
        if fresh.num_rows:
            steps.append(CopyStep(table, None, names, fresh.select(values), binary))
            kept = kept.slice(0, 0) if every else kept.filter(pc.invert(inserted))
    if kept.num_rows == 0:
        return steps
    rest = [n for n in names if n not in primary_key]
    action: sql.Composable
    if rest:
        action = sql.SQL("DO UPDATE SET {}").format(
            sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(n)) for n in rest)
        )
    else:
        action = sql.SQL("DO NOTHING")
    columns = sql.SQL(", ").join(sql.Identifier(n) for n in names)
    upsert = sql.SQL("INSERT INTO {t} ({cols}) SELECT {cols} FROM {s} ON CONFLICT ({pk}) {action}")
    pk = sql.SQL(", ").join(sql.Identifier(k) for k in primary_key)
    steps.append(
        CopyStep(
            table, "upsert", names, kept.select(values), binary,
            lambda stage: upsert.format(t=_target(table), cols=columns, s=stage, pk=pk, action=action),
        )
    )  # fmt: skip
    return steps


def run_steps(conn: sa.Connection, steps: Sequence[CopyStep]) -> None:
    """The steps in order, each COPY's statement after it. The next step's payload is built once
    this COPY's rows are sent, before waiting for PostgreSQL to have read them: the sink's CPU and
    the server's overlap (they took turns, ~0.8 us per row of the sink's on the wait's path)."""
    stages = Stages.of(conn)
    raw = conn.connection.driver_connection
    assert raw is not None
    for i, step in enumerate(steps):
        following = steps[i + 1] if i + 1 < len(steps) else None
        if step.purpose is None:
            into: sql.Composable = _target(step.table)
        else:
            into = sql.Identifier(stages.stage(conn, step.table, step.purpose, step.names))
        step.encode()
        pieces, step.payload = step.payload or [], None  # let go of each table's rows once sent
        columns = sql.SQL(", ").join(sql.Identifier(n) for n in step.names)
        form = sql.SQL("BINARY" if step.binary is not None else "CSV")
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {})").format(into, columns, form)
        try:
            with raw.cursor() as cur, cur.copy(statement) as copy:
                for piece in pieces:
                    copy.write(piece)
                del pieces
                if following is not None:
                    following.encode()  # PostgreSQL reads the rows sent meanwhile
        except psycopg.errors.UniqueViolation as exc:
            if step.purpose is None:
                raise KeysExist(step.table.name) from exc
            raise
        if step.then is not None:
            assert isinstance(into, sql.Identifier)
            execute(conn, step.then(into))


def write_table(
    conn: sa.Connection,
    table: sa.Table,
    primary_key: Sequence[str],
    names: Sequence[str],
    rows: pa.Table,
    direct: bool,
    binary: Sequence[ArrowType] | None = None,
) -> None:
    """``rows`` into ``table`` now (:func:`plan_table`, then :func:`run_steps`)."""
    run_steps(conn, plan_table(table, primary_key, names, rows, direct, binary))


def _encoded(rows: pa.Table, binary: Sequence[ArrowType] | None) -> Iterator[bytes | memoryview]:
    """The COPY stream of ``rows`` (columns in the order of the COPY's): binary when ``binary``
    gives their types, else CSV."""
    if binary is not None:
        yield from rows_binary(rows.columns, binary)
        return
    out = io.BytesIO()
    # "needed" quoting quotes empty strings, so that only NULL is an unquoted empty field
    pa_csv.write_csv(rows, out, pa_csv.WriteOptions(include_header=False, quoting_style="needed"))
    yield out.getbuffer()


def _target(table: sa.Table) -> sql.Composable:
    return sql.Identifier(table.schema, table.name) if table.schema else sql.Identifier(table.name)
