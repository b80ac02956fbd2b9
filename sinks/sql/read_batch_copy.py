"""PostgreSQL: a snapshot chunk's rows upserted column by column, through CSV COPY into a stage.

The row path (``postgres_copy``) hands psycopg one row at a time (``write_row``), which was most of a
PostgreSQL bootstrap's own time. Here the chunk's columns become one Arrow table, pyarrow writes it
as CSV in C, and the bytes go to ``COPY ... (FORMAT CSV)`` in one call; then the same set-based
``INSERT ... SELECT ... ON CONFLICT DO UPDATE`` as the row path. Only column kinds whose CSV text
PostgreSQL reads back to the very value are taken (integers, booleans, text, binary as ``\\x`` hex,
dates, DATETIME, decimals); a chunk with any other kind goes the row path.

A chunk the snapshot reader read as Arrow columns (sinks/arrow_rows.py) is copied from its arrays
with no Python value made: ``columns`` is None then, the target's checks run on the arrays
(``arrays_pass``), bytea's hex text is made in compiled code (``headwater_native.bytea_hex``).
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import headwater_native
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.dialects import postgresql

from cdc.core.events import ColumnValue
from cdc.core.schemas import INTEGER_RANGES, ArrowKind, TableSchema
from sinks.arrow_rows import python_values
from sinks.sql.names import quoted

__all__ = ["ColumnCopy", "arrays_pass", "csv_kinds_only"]

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


Check = Callable[[Any], "str | None"]


def arrays_pass(checks: Sequence[tuple[int, str, Check]], arrays: Sequence[pa.Array]) -> bool:
    """Whether no value of ``arrays`` fails its column's check (sinks/sql/type_mapping.checker),
    without a Python value per row for text: a text check (length, NUL, characters the target
    cannot hold) passes every ASCII, NUL-free value when it passes the longest of them, so only
    that one and the values with NUL or non-ASCII characters are checked one by one. Any other
    kind is checked value by value."""
    for i, _name, check in checks:
        array = arrays[i]
        if not pa.types.is_string(array.type):
            if any(check(v) is not None for v in python_values(array)):
                return False
            continue
        odd = pc.or_(pc.invert(pc.string_is_ascii(array)), pc.match_substring(array, "\x00"))
        odd = pc.fill_null(odd, False)
        if any(check(v) is not None for v in array.filter(odd).to_pylist()):
            return False
        plain = array.filter(pc.invert(odd))
        plain = plain.filter(pc.is_valid(plain))
        if (
            len(plain)
            and check(plain[pc.index(pc.utf8_length(plain), pc.max(pc.utf8_length(plain))).as_py()].as_py())
            is not None
        ):
            return False
    return True


@dataclass(frozen=True, slots=True)
class ColumnCopy:
    """Rows of one chunk for one target table, as columns in ``schema``'s column order."""

    target: str
    schema: TableSchema
    names: tuple[str, ...]  # target column of each source column
    columns: Sequence[Sequence[ColumnValue]] | None  # None: every array is given
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
        if self.columns is None:
            first = self.arrays[index[0]] if self.arrays is not None else None
            if first is None or not len(first):
                return False
            if len(index) == 1:  # min and max of the Arrow column, no Python per value
                bounds = pc.min_max(first)
                low, high = (bounds["min"].as_py(),), (bounds["max"].as_py(),)
            else:
                keys = list(zip(*(python_values(self._array(i)) for i in index), strict=True))
                low, high = min(keys), max(keys)
        elif not self.columns[index[0]]:
            return False
        elif len(index) == 1:  # min and max of one column, at C speed
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

    def _array(self, i: int) -> pa.Array:
        """Column ``i`` as an Arrow array of its ``arrow_type``."""
        kind = self.schema.columns[i].arrow_type.to_pyarrow()
        ready = None if self.arrays is None else self.arrays[i]
        if ready is not None and ready.type == kind:
            return ready
        assert self.columns is not None, "ColumnCopy without columns needs every array"
        return pa.array(self.columns[i], kind)

    def _csv(self) -> bytes:
        arrays = []
        for i, column in enumerate(self.schema.columns):
            if column.arrow_type.kind is ArrowKind.BINARY:
                # bytea's text form; PostgreSQL reads "\x..." back to the very bytes
                arrays.append(_bytea_hex(self._array(i)))
            else:
                arrays.append(self._array(i))
        table = pa.Table.from_arrays(arrays, names=[f"c{i}" for i in range(len(arrays))])
        out = io.BytesIO()
        # "needed" quoting quotes empty strings, so that only NULL is an unquoted empty field
        pa_csv.write_csv(table, out, pa_csv.WriteOptions(include_header=False, quoting_style="needed"))
        return out.getvalue()


def _bytea_hex(array: pa.Array) -> pa.Array:
    """``"\\x" + value.hex()`` of each value (nulls stay null), made in compiled code."""
    wide = array.cast(pa.large_binary())
    n = len(wide)
    validity, offsets, data = wide.buffers()
    start = wide.offset * 8
    text, text_offsets = headwater_native.bytea_hex(
        data.to_pybytes() if data is not None else b"", offsets.to_pybytes()[start : start + (n + 1) * 8], n
    )
    if validity is not None and wide.offset:
        validity = pc.is_valid(wide).buffers()[1]  # the bitmap realigned to the slice
    hexed = pa.Array.from_buffers(
        pa.large_string(),
        n,
        [validity, pa.py_buffer(text_offsets), pa.py_buffer(text)],
        null_count=wide.null_count,
    )
    return hexed.cast(pa.string())
