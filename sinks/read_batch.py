"""A snapshot chunk's rows (op ``r``) as one typed batch, for sinks that write them column-wise.

A bootstrap chunk is thousands of rows of one table, one schema, one time and one transaction id, at
consecutive positions of one snapshot anchor (``snapshot_row_position``). Building a ChangeEvent per
row, then taking each apart again in every sink, was most of an embedded bootstrap's time
(benchmarks/results/profiles/bootstrap_*.txt). A ReadBatch keeps the rows as the reader gave them
plus what they share; a sink that knows it writes the rows column-wise (Iceberg: Arrow arrays;
PostgreSQL: COPY), while any other sink sees an ordinary sequence of ChangeEvents, built one at a
time as it iterates: values, positions and order are exactly those the per-row events had.

Its rows may be ArrowRows (sinks/arrow_rows.py: the snapshot reader's columnar path), Arrow arrays
seen as tuples: ``source_array`` then hands out those arrays, and tuples are made only for what asks
for them.

It is handed to a sink as ``SinkBatch.records`` (the whole batch), only in embedded mode and only
with no column policies (they rewrite values row by row; see cdc/daemon/embedded.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, overload

from cdc.core.events import ChangeEvent, ColumnValue, Op, RowImage
from cdc.core.positions import Position
from cdc.core.schemas import TableRef, TableSchema
from sinks.arrow_rows import ArrowRows

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["ReadBatch"]


@dataclass(frozen=True, slots=True, eq=False)
class ReadBatch(Sequence[ChangeEvent]):
    """``rows[i]`` is the after image of an ``r`` event at ``first.at_row(first.row + i)``; a
    ``lead`` truncate (a chunk logged by an earlier version with its --replace truncate) comes before
    them, one row index lower."""

    schema: TableSchema
    rows: Sequence[RowImage]  # a tuple, or ArrowRows
    first: Position  # the position of rows[0]
    source_ts_ms: int
    transaction_id: str
    lead: ChangeEvent | None = None
    # the rows transposed, made once for every sink (and the chunk log) that wants columns
    _columns: list[tuple[ColumnValue, ...]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    # the rows packed for embedded mode's chunk log (snapshotter/chunk_columns.py), when made ahead
    _packed: object | None = field(default=None, init=False, repr=False, compare=False)

    # each column as an Arrow array of its column's ``arrow_type``, when made ahead (None: not made)
    _arrays: tuple[pa.Array | None, ...] | None = field(default=None, init=False, repr=False, compare=False)

    def prepared(
        self,
        columns: list[tuple[ColumnValue, ...]],
        packed: object | None,
        arrays: tuple[pa.Array | None, ...] | None = None,
    ) -> ReadBatch:
        """This batch, with its ``columns()`` (the chunk log's packed form, the Arrow arrays) already
        made: by the snapshot reader's thread, from these very rows."""
        if len(columns) != len(self.schema.columns) or (arrays is not None and len(arrays) != len(columns)):
            raise ValueError(f"{len(columns)} columns given for {len(self.schema.columns)}")
        object.__setattr__(self, "_columns", columns)
        object.__setattr__(self, "_packed", packed)
        object.__setattr__(self, "_arrays", arrays)
        return self

    def source_array(self, index: int, start: int = 0) -> pa.Array | None:
        """Column ``index``'s values from row ``start`` on, as an Arrow array of the column's
        ``arrow_type``, if it was made ahead; else None (the caller builds it from ``columns()``)."""
        if isinstance(self.rows, ArrowRows):
            made = self.rows.arrays[index]
            return made.slice(start) if start else made
        made = None if self._arrays is None else self._arrays[index]
        if made is None:
            return None
        return made.slice(start) if start else made

    @property
    def packed(self) -> object | None:
        """The packed form given to ``prepared``, if any."""
        return self._packed

    def columns(self) -> list[tuple[ColumnValue, ...]]:
        """The values of each column, in column order (one tuple per column of ``schema``)."""
        if self._columns is None and isinstance(self.rows, ArrowRows):
            object.__setattr__(self, "_columns", self.rows.columns())
        if self._columns is None:
            columns: list[tuple[ColumnValue, ...]] = [() for _ in self.schema.columns]
            if self.rows:
                columns = list(zip(*self.rows, strict=True))
            object.__setattr__(self, "_columns", columns)
            return columns
        return self._columns

    def __len__(self) -> int:
        return len(self.rows) + (self.lead is not None)

    @overload
    def __getitem__(self, index: int) -> ChangeEvent: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[ChangeEvent]: ...
    def __getitem__(self, index: int | slice) -> ChangeEvent | Sequence[ChangeEvent]:
        if isinstance(index, slice):
            return tuple(self)[index]
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(index)
        if self.lead is not None:
            if index == 0:
                return self.lead
            index -= 1
        return self.event(index)

    @property
    def arrow(self) -> ArrowRows | None:
        """The rows as Arrow columns, when the reader made them so."""
        return self.rows if isinstance(self.rows, ArrowRows) else None

    def __iter__(self) -> Iterator[ChangeEvent]:
        if self.lead is not None:
            yield self.lead
        schema, ts_ms, txn = self.schema, self.source_ts_ms, self.transaction_id
        key_of = schema.key_indexes()
        at_row, base = self.first.at_row, self.first.row
        for i, row in enumerate(self.rows):
            key = tuple(row[k] for k in key_of)
            yield ChangeEvent(Op.READ, schema, key, None, row, at_row(base + i), ts_ms, txn)

    def event(self, i: int) -> ChangeEvent:
        """The ``r`` event of ``rows[i]``."""
        row = self.rows[i]
        key = tuple(row[k] for k in self.schema.key_indexes())
        return ChangeEvent(
            Op.READ, self.schema, key, None, row, self.first.at_row(self.first.row + i), self.source_ts_ms,
            self.transaction_id,
        )  # fmt: skip

    @property
    def table(self) -> TableRef:
        return self.schema.ref

    @property
    def position(self) -> Position:
        """The last record's position (where a sink that applied the batch stands)."""
        if self.rows:
            return self.first.at_row(self.first.row + len(self.rows) - 1)
        if self.lead is not None:
            return self.lead.position
        raise IndexError("an empty ReadBatch has no position")

    def rows_after(self, position: Position) -> int:
        """How many leading rows lie at or before ``position`` (a sink skips those). Exact because
        the rows' positions rise by one row index each."""
        first, n = self.first, len(self.rows)
        if n == 0 or position < first:
            return 0
        last = self.position
        if position >= last:
            return n
        if position.at_row(0) == first.at_row(0) and position.era == first.era:
            return position.row - first.row + 1  # within the run: same transaction and era
        # Not on the run's anchor: the rows lie between it and the next ones, compare one by one.
        return sum(1 for i in range(n) if first.at_row(first.row + i) <= position)

    def after(self, position: Position | None) -> ReadBatch:
        """The batch without the records at or before ``position`` (what a sink holding it lacks)."""
        if position is None:
            return self
        skip = self.rows_after(position)
        lead = self.lead if self.lead is not None and self.lead.position > position else None
        if skip == 0 and lead is self.lead:
            return self
        first = self.first.at_row(self.first.row + skip)
        return ReadBatch(self.schema, self.rows[skip:], first, self.source_ts_ms, self.transaction_id, lead)

    def row_events(self) -> Sequence[ChangeEvent]:
        """The lead, if any, as a sequence (what a sink must apply before the rows)."""
        return () if self.lead is None else (self.lead,)
