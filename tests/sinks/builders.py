"""Small builders for sink tests: table schemas, positions and change events."""

from __future__ import annotations

import itertools

from cdc.core.events import ChangeEvent, ColumnValue, Op, RowImage
from cdc.core.positions import Gtid, Position
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from sinks.contract import AppliedState, SinkBatch

REF = TableRef("shop", "items")


def col(
    name: str, source_type: str, kind: ArrowKind, precision: int = 0, scale: int = 0, nullable: bool = True
) -> Column:
    return Column(name, source_type, ArrowType(kind, precision, scale), nullable)


def schema(*columns: Column, pk: tuple[str, ...] = ("id",), ref: TableRef = REF) -> TableSchema:
    return TableSchema.build(ref, columns, pk)


ITEMS = schema(
    col("id", "bigint", ArrowKind.INT64, nullable=False),
    col("name", "varchar", ArrowKind.STRING),
    col("qty", "int", ArrowKind.INT32),
)


class Clock:
    """Hands out increasing positions, one transaction per ``txn()``."""

    def __init__(self) -> None:
        self._seq = itertools.count(1)
        self.current = Position(Gtid(0, 1, 0), "bin.000001", 4, 0)

    def txn(self) -> Position:
        seq = next(self._seq)
        self.current = Position(Gtid(0, 1, seq), "bin.000001", 100 * seq, 0)
        return self.current

    def next_row(self) -> Position:
        self.current = self.current.at_row(self.current.row + 1)
        return self.current


def event(
    op: Op,
    pos: Position,
    after: RowImage | None = None,
    before: RowImage | None = None,
    table: TableSchema = ITEMS,
) -> ChangeEvent:
    image = after if after is not None else before
    key = None if image is None else tuple(image[i] for i in table.key_indexes())
    return ChangeEvent(op, table, key, before, after, pos, 1_700_000_000_000, str(pos.gtid))


class Writer:
    """Builds batches of events, each event at the next position."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.clock.txn()
        self.pending: list[ChangeEvent] = []

    def _pos(self) -> Position:
        return self.clock.txn() if not self.pending else self.clock.next_row()

    def insert(self, *row: ColumnValue, table: TableSchema = ITEMS) -> Writer:
        self.pending.append(event(Op.CREATE, self._pos(), after=tuple(row), table=table))
        return self

    def read(self, *row: ColumnValue, table: TableSchema = ITEMS) -> Writer:
        self.pending.append(event(Op.READ, self._pos(), after=tuple(row), table=table))
        return self

    def update(self, before: RowImage, after: RowImage, table: TableSchema = ITEMS) -> Writer:
        self.pending.append(event(Op.UPDATE, self._pos(), after=after, before=before, table=table))
        return self

    def delete(self, *row: ColumnValue, table: TableSchema = ITEMS) -> Writer:
        self.pending.append(event(Op.DELETE, self._pos(), before=tuple(row), table=table))
        return self

    def truncate(self, table: TableSchema = ITEMS) -> Writer:
        pos = self._pos()
        self.pending.append(ChangeEvent(Op.TRUNCATE, table, None, None, None, pos, 0, str(pos.gtid)))
        return self

    def batch(self, offsets: dict[str, int] | None = None) -> SinkBatch:
        records = tuple(self.pending)
        self.pending = []
        return SinkBatch(records, AppliedState(records[-1].position, offsets or {}))
