"""A snapshot chunk (ReadBatch) into a serving table without an event per row.

The SQL sink's steps (skip what it holds, refuse keyless tables, sync the schema, fence truncates,
plan per key) run on the chunk's *head*: its lead truncate, if any, and its first row, as ordinary
events. The rows after the first share its table, schema and key, and their positions rise one row
index at a time, so they are planned here straight from the row tuples: the key of each, upserted
(a chunk never holds a key twice). Only what the head's fate says can differ for them is checked:
the truncate fence of the table, by position. PostgreSQL then takes them through binary COPY into a
stage and one upsert (``write_plan``), the others through executemany, as any large batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cdc.core.events import ChangeEvent
from cdc.core.positions import Position
from cdc.core.schemas import TableSchema
from sinks.contract import SinkBatch
from sinks.read_batch import ReadBatch
from sinks.sql.codec import Codec
from sinks.sql.dead_letter import BadRow
from sinks.sql.read_batch_copy import ColumnCopy, arrays_pass, csv_kinds_only
from sinks.sql.table_writer import TablePlan

__all__ = ["ChunkRows", "add_rest", "chunk_rows", "real_events"]


@dataclass(frozen=True, slots=True)
class ChunkRows:
    """A chunk split into its head (events the sink's own steps take) and the rows after it."""

    batch: ReadBatch  # the rows the sink does not hold yet
    head: SinkBatch  # the lead truncate (if any) and the first row, as events

    @property
    def first(self) -> ChangeEvent:
        return self.head.records[-1]  # type: ignore[return-value]


def chunk_rows(batch: SinkBatch, held: Position | None) -> ChunkRows | None:
    """``batch`` as head and rest when it is a ReadBatch with rows still to apply; else None."""
    records = batch.records
    if not isinstance(records, ReadBatch) or not records.rows:
        return None
    rest = records.after(held)
    if not rest.rows:
        return None  # wholly held (or only a truncate left): the generic path takes it
    head = SinkBatch((*rest.row_events(), rest.event(0)), batch.state)
    return ChunkRows(rest, head)


def add_rest(
    plans: dict[str, TablePlan],
    rows: ChunkRows,
    kept: Sequence[ChangeEvent],
    fences: Mapping[str, Position],
    target: str,
    codec_of: Callable[[str, TableSchema], Codec],
    copy_threshold: int | None = None,
) -> ColumnCopy | None:
    """Plan the rows after the head's first row into ``target``'s plan. ``kept``: what the truncate
    fence left of the head. Positions rise along the chunk, so when the first row is kept every row
    is; when the fence dropped it, the rows above the fence are kept (as the fence keeps any row).
    A first row left out for another reason (a keyless table the sink refuses) leaves out all.

    With ``copy_threshold`` (PostgreSQL) and at least that many rows of kinds CSV carries exactly,
    none of which the target refuses, the rows are returned to be copied column-wise after the
    plans are written (read_batch_copy.py) instead of being planned."""
    first, batch = rows.first, rows.batch
    start = 1
    if not any(e is first for e in kept):
        floor = fences.get(str(first.table))
        if floor is None or not first.position < floor:
            return None
        start = max(1, batch.rows_after(floor))
        if start >= len(batch.rows):
            return None
    codec = codec_of(target, first.schema)
    schema = first.schema
    if (
        copy_threshold is not None
        and len(batch.rows) - start >= copy_threshold
        and codec.encoders is None
        and len(codec.names) == len(schema.columns)
        and csv_kinds_only(schema)
    ):
        if batch.arrow is not None:  # Arrow columns from the reader: checked and copied as they are
            arrays = [batch.source_array(i, start) for i in range(len(schema.columns))]
            if arrays_pass(codec.checks, arrays):
                return ColumnCopy(target, schema, codec.names, None, arrays)
        else:
            columns = [values[start:] for values in batch.columns()]
            if all(check(v) is None for i, _, check in codec.checks for v in columns[i]):
                made = [batch.source_array(i, start) for i in range(len(columns))]
                return ColumnCopy(target, schema, codec.names, columns, made)
    plan = plans.get(target)
    if plan is None:
        plan = plans[target] = TablePlan(target)
    key_of, actions = codec.key_of, plan.actions
    for row in batch.rows[start:]:
        actions[key_of(row)] = (row, first)
    return None


def real_events(
    bad: list[BadRow], rows: ChunkRows | None, codec_of: Callable[[str, TableSchema], Codec]
) -> list[BadRow]:
    """Dead letters name their own row: rows planned from the chunk carry its first event, so the
    events of the bad ones are built here (bad rows are rare; one pass over the chunk)."""
    if rows is None or not any(b.event is rows.first for b in bad):
        return bad
    first = rows.first
    out = []
    for b in bad:
        if b.event is first:
            key_of = codec_of(b.target_table, first.schema).key_of
            index = next(i for i, row in enumerate(rows.batch.rows) if key_of(row) == b.key)
            b = dataclasses.replace(b, event=rows.batch.event(index))
        out.append(b)
    return out
