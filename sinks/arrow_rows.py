"""A snapshot chunk's rows held as Arrow arrays, one per column, seen as a sequence of row tuples.

The snapshot reader's columnar path (snapshotter/text_columns.py) builds each column straight from the
server's text into an Arrow array of the column's ``arrow_type``, with no Python object per value.
Sinks that write columns (Iceberg appends, PostgreSQL COPY) take the arrays as they are
(``ReadBatch.source_array``); anything that wants rows (the first row a sink's own steps look at, a
sink without a column path, the merge's key lookups on a composite key) gets tuples, made only then
and only of what it asks: one row by index, or every row once.

The values it gives are those of the row path: ``to_pylist`` of each array, except that a TIMESTAMP
column's aware datetimes carry ``datetime.UTC`` (Arrow's are ``ZoneInfo('UTC')``: equal, but not the
same tzinfo the binlog decoder gives).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator, Sequence
from typing import Any, overload

import pyarrow as pa

from cdc.core.events import ColumnValue, RowImage

__all__ = ["ArrowRows", "concat_rows", "python_values"]

_NAIVE_US = pa.timestamp("us")


def python_values(array: pa.Array) -> list[Any]:
    """``array.to_pylist()``, with ``datetime.UTC`` as the zone of aware datetimes."""
    if pa.types.is_timestamp(array.type) and array.type.tz is not None:
        utc = dt.UTC
        return [None if v is None else v.replace(tzinfo=utc) for v in array.cast(_NAIVE_US).to_pylist()]
    values: list[Any] = array.to_pylist()
    return values


class ArrowRows(Sequence[RowImage]):
    """``len(arrays[0])`` rows; ``arrays[i]`` holds column ``i``'s values (every array as long)."""

    __slots__ = ("_columns", "arrays", "n")

    def __init__(self, arrays: Sequence[pa.Array], n: int) -> None:
        if any(len(a) != n for a in arrays):
            raise ValueError(f"ArrowRows: every column must hold {n} values")
        self.arrays: tuple[pa.Array, ...] = tuple(arrays)
        self.n = n
        self._columns: list[tuple[ColumnValue, ...]] | None = None

    def columns(self) -> list[tuple[ColumnValue, ...]]:
        """Each column's values as Python values (made once, on first use)."""
        if self._columns is None:
            self._columns = [tuple(python_values(a)) for a in self.arrays]
        return self._columns

    def column(self, index: int) -> tuple[ColumnValue, ...]:
        """One column's values as Python values (the others are not made)."""
        if self._columns is not None:
            return self._columns[index]
        return tuple(python_values(self.arrays[index]))

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, index: int) -> RowImage: ...
    @overload
    def __getitem__(self, index: slice) -> ArrowRows: ...
    def __getitem__(self, index: int | slice) -> RowImage | ArrowRows:
        if isinstance(index, slice):
            start, stop, step = index.indices(self.n)
            if step != 1:
                raise ValueError("ArrowRows: only contiguous slices")
            length = max(stop - start, 0)
            return ArrowRows([a.slice(start, length) for a in self.arrays], length)
        if index < 0:
            index += self.n
        if not 0 <= index < self.n:
            raise IndexError(index)
        if self._columns is not None:
            return tuple(c[index] for c in self._columns)
        return tuple(python_values(a.slice(index, 1))[0] for a in self.arrays)

    def __iter__(self) -> Iterator[RowImage]:
        if not self.n:
            return
        start = 0
        if self._columns is None:
            # the first row alone: a sink's own steps take a chunk's first row, then its columns
            yield self[0]
            start = 1
        yield from itertools.islice(zip(*self.columns(), strict=True), start, None)

    def filter(self, keep: pa.BooleanArray) -> ArrowRows:
        """The rows where ``keep`` is true, in order."""
        arrays = [a.filter(keep) for a in self.arrays]
        return ArrowRows(arrays, len(arrays[0]) if arrays else 0)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return len(other) == self.n and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ArrowRows({self.n} rows, {len(self.arrays)} columns)"


def concat_rows(parts: Sequence[Sequence[RowImage]]) -> Sequence[RowImage]:
    """The rows of ``parts`` in order: ArrowRows when every part is, else a tuple of tuples."""
    if parts and all(isinstance(p, ArrowRows) for p in parts):
        arrow = [p for p in parts if isinstance(p, ArrowRows)]
        columns = [pa.concat_arrays([p.arrays[i] for p in arrow]) for i in range(len(arrow[0].arrays))]
        return ArrowRows(columns, sum(p.n for p in arrow))
    return tuple(row for p in parts for row in p)
