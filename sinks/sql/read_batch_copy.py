"""PostgreSQL: a snapshot chunk's rows upserted column by column, through CSV COPY into a stage.

The row path (``postgres_copy``) hands psycopg one row at a time (``write_row``), which was most of a
PostgreSQL bootstrap's own time. Here the chunk's columns become one Arrow table, pyarrow writes it
as CSV in C, and the bytes go to ``COPY ... (FORMAT CSV)`` in one call; then the same set-based
``INSERT ... SELECT ... ON CONFLICT DO UPDATE`` as the row path. Only column kinds whose CSV text
PostgreSQL reads back to the very value are taken (integers, booleans, text, binary as ``\\x`` hex,
dates, DATETIME, decimals); a chunk with any other kind goes the row path.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.dialects import postgresql

from cdc.core.events import ColumnValue
from cdc.core.schemas import INTEGER_RANGES, ArrowKind, TableSchema
from sinks.sql.names import quoted

__all__ = ["ColumnCopy", "csv_kinds_only"]

_INTEGER_KINDS = frozenset(INTEGER_RANGES)
_CSV_KINDS = _INTEGER_KINDS | {
    ArrowKind.BOOL,
    ArrowKind.STRING,
    ArrowKind.BINARY,
    ArrowKind.DATE,
    ArrowKind.TIMESTAMP,
    ArrowKind.DECIMAL,
}
_names = itertools.count()


def csv_kinds_only(schema: TableSchema) -> bool:
    return all(c.arrow_type.kind in _CSV_KINDS for c in schema.columns)


@dataclass(frozen=True, slots=True)
class ColumnCopy:
    """Rows of one chunk for one target table, as columns in ``schema``'s column order."""

    target: str
    schema: TableSchema
    names: tuple[str, ...]  # target column of each source column
    columns: Sequence[Sequence[ColumnValue]]
    # the same columns as Arrow arrays of each column's arrow_type where made ahead (the snapshot
    # reader's thread, ReadBatch.source_array), None where not
    arrays: Sequence[pa.Array | None] | None = None

    def write(self, conn: sa.Connection, table: sa.Table, primary_key: Sequence[str]) -> None:
        if self._none_held(conn, table, primary_key):
            # no row of the target lies in the chunk's key range (checked under the sink's lock on
            # its positions row): no upsert can conflict, so the rows go straight in
            self._copy(conn, table.name, table.schema)
            return
        stage = sa.Table(
            f"_hw_stage_rb_{next(_names)}",
            sa.MetaData(),
            *(sa.Column(quoted(name), table.c[name].type) for name in self.names),
            prefixes=["TEMPORARY"],
            postgresql_on_commit="DROP",
        )
        stage.create(conn)
        self._copy(conn, stage.name, None)
        insert = postgresql.insert(table).from_select(list(self.names), sa.select(*stage.c))
        updates = {name: insert.excluded[name] for name in self.names if name not in primary_key}
        if updates:
            stmt = insert.on_conflict_do_update(index_elements=list(primary_key), set_=updates)
        else:
            stmt = insert.on_conflict_do_nothing(index_elements=list(primary_key))
        conn.execute(stmt)
        conn.execute(sa.schema.DropTable(stage))

    def _none_held(self, conn: sa.Connection, table: sa.Table, primary_key: Sequence[str]) -> bool:
        """Whether the target holds no row in the chunk's key range. Only for integer keys, whose
        order is the same in the source and here (a string key's collation may differ)."""
        by_name = dict(zip(self.names, range(len(self.names)), strict=True))
        if not primary_key or any(n not in by_name for n in primary_key):
            return False
        index = [by_name[n] for n in primary_key]
        if any(self.schema.columns[i].arrow_type.kind not in _INTEGER_KINDS for i in index):
            return False
        if not self.columns[index[0]]:
            return False
        if len(index) == 1:  # min and max of one column, at C speed
            values = self.columns[index[0]]
            low, high = (min(values),), (max(values),)  # type: ignore[type-var]
        else:
            keys = list(zip(*(self.columns[i] for i in index), strict=True))
            low, high = min(keys), max(keys)
        key = sa.tuple_(*(table.c[n] for n in primary_key))
        held = conn.execute(sa.select(sa.literal(1)).where(key.between(low, high)).limit(1)).first()
        return held is None

    def _copy(self, conn: sa.Connection, name: str, schema: str | None) -> None:
        target = sql.Identifier(schema, name) if schema else sql.Identifier(name)
        copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT CSV)").format(
            target, sql.SQL(", ").join(sql.Identifier(n) for n in self.names)
        )
        raw = conn.connection.driver_connection  # the psycopg connection, inside our transaction
        assert raw is not None
        with raw.cursor() as cur, cur.copy(copy_sql) as copy:
            copy.write(self._csv())

    def _csv(self) -> bytes:
        arrays = []
        made = self.arrays or [None] * len(self.columns)
        for column, values, ready in zip(self.schema.columns, self.columns, made, strict=True):
            if column.arrow_type.kind is ArrowKind.BINARY:
                # bytea's text form; PostgreSQL reads "\x..." back to the very bytes
                hexed = [None if v is None else "\\x" + v.hex() for v in values]  # type: ignore[union-attr]
                arrays.append(pa.array(hexed, pa.string()))
            elif ready is not None and ready.type == column.arrow_type.to_pyarrow():
                arrays.append(ready)
            else:
                arrays.append(pa.array(values, column.arrow_type.to_pyarrow()))
        table = pa.Table.from_arrays(arrays, names=[f"c{i}" for i in range(len(arrays))])
        out = io.BytesIO()
        # "needed" quoting quotes empty strings, so that only NULL is an unquoted empty field
        pa_csv.write_csv(table, out, pa_csv.WriteOptions(include_header=False, quoting_style="needed"))
        return out.getvalue()
