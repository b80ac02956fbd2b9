"""Honouring ROLLBACK TO SAVEPOINT (and a trailing ROLLBACK) inside one binlog event group.

MariaDB normally drops the events of rolled-back work from its binlog cache. It cannot when the
transaction has also written a non-transactional table (MyISAM, Aria): those changes stay at the
source, so the group is logged with the transactional rows that were later undone, followed by a
``ROLLBACK TO `x``` query (or, when the savepoint was the transaction's start, a final ``ROLLBACK``).
Such groups, and only they, lack the GTID event's FL_TRANSACTIONAL flag. The decoder therefore holds
the records of those groups from their first transactional-table row until the group ends, and drops
here the transactional rows a rollback undid. Non-transactional rows are always kept.

Positions are assigned as rows are read, so a dropped row leaves a gap in the row indexes: the same
binlog gives the same positions on every read, and a restart's skip count stays exact.

Memory: a held group is bounded by ``limit`` records (a TerminalError past it); groups with
FL_TRANSACTIONAL, i.e. ordinary InnoDB transactions, are never held.
"""

from __future__ import annotations

from collections.abc import Callable

from cdc.core.errors import TerminalError
from cdc.core.events import ChangeEvent, Op, SchemaChange
from cdc.core.positions import Position
from cdc.core.schemas import TableRef

__all__ = ["DEFAULT_HOLD_LIMIT", "HeldGroup", "IsTransactional", "Savepoints"]

DEFAULT_HOLD_LIMIT = 500_000
IsTransactional = Callable[[TableRef], bool]
_ROW_OPS = frozenset({Op.CREATE, Op.UPDATE, Op.DELETE})


class HeldGroup:
    """The records of one event group from its first transactional-table row on, until it ends."""

    __slots__ = ("_is_transactional", "_limit", "_where", "before", "records")

    def __init__(
        self, before: Position | None, is_transactional: IsTransactional, limit: int, where: str
    ) -> None:
        self.before = before  # the group's last record emitted before holding started
        self.records: list[ChangeEvent | SchemaChange] = []
        self._is_transactional = is_transactional
        self._limit = limit
        self._where = where

    def append(self, record: ChangeEvent | SchemaChange) -> None:
        self.records.append(record)
        if len(self.records) > self._limit:
            raise TerminalError(
                f"transaction {self._where} wrote a non-transactional (MyISAM/Aria) table and more than "
                f"{self._limit} row changes of transactional tables; such a transaction is held in memory "
                "until it ends, so that rows undone by ROLLBACK TO SAVEPOINT can be dropped. Keep "
                "non-transactional tables out of large transactions (or convert them to InnoDB)"
            )

    def rollback_from(self, row: int) -> None:
        """Drop the transactional-table row changes at row index ``row`` and later."""
        kept = [r for r in self.records if not self._undone(r, row)]
        self.records = kept

    def _undone(self, record: ChangeEvent | SchemaChange, row: int) -> bool:
        return (
            isinstance(record, ChangeEvent)
            and record.op in _ROW_OPS
            and record.position.row >= row
            and self._is_transactional(record.table)
        )

    @property
    def last(self) -> Position | None:
        """The group's last record that will be emitted (held or emitted before holding)."""
        return self.records[-1].position if self.records else self.before


class Savepoints:
    """Savepoint names of the open group, each with the row index at which it was set."""

    __slots__ = ("marks",)

    def __init__(self) -> None:
        self.marks: dict[str, int] = {}

    def set(self, name: str, row: int) -> None:
        self.marks.pop(name, None)  # setting a name again moves it (and makes it the newest)
        self.marks[name] = row

    def rollback_to(self, name: str) -> int:
        """The row index the rollback returns to; later savepoints are gone, ``name`` stays. A name
        never logged was set while the group was still empty (the server logs no SAVEPOINT then)."""
        row = self.marks.get(name)
        if row is None:
            return 0
        names = list(self.marks)
        for later in names[names.index(name) + 1 :]:
            del self.marks[later]
        return row

    def release(self, name: str) -> None:
        if name in self.marks:
            names = list(self.marks)
            for gone in names[names.index(name) :]:
                del self.marks[gone]
