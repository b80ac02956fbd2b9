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

Memory: groups with FL_TRANSACTIONAL (ordinary InnoDB transactions) are never held, nor are rows of
non-transactional tables before a group's first transactional row (when the decoder knows engines).
A held group is bounded by the decoder's ``hold_limit`` (DEFAULT_HOLD_LIMIT records): past it the
decoder releases the records and streams the rest, and a rollback that would then undo released
rows is a terminal error, never a silent phantom.
"""

from __future__ import annotations

from collections.abc import Callable

from cdc.core.errors import SourceProtocolError
from cdc.core.events import ChangeEvent, Op, SchemaChange
from cdc.core.positions import Position
from cdc.core.schemas import TableRef
from cdc.sources.mariadb.decoder_errors import where

__all__ = ["DEFAULT_HOLD_LIMIT", "HeldGroup", "IsTransactional", "Savepoints", "apply_rollback"]

DEFAULT_HOLD_LIMIT = 500_000
IsTransactional = Callable[[TableRef], bool]
_ROW_OPS = frozenset({Op.CREATE, Op.UPDATE, Op.DELETE})


class HeldGroup:
    """The records of one event group from its first transactional-table row on, until it ends."""

    __slots__ = ("_is_transactional", "before", "records")

    def __init__(self, before: Position | None, is_transactional: IsTransactional) -> None:
        self.before = before  # the group's last record emitted before holding started
        self.records: list[ChangeEvent | SchemaChange] = []
        self._is_transactional = is_transactional

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


def apply_rollback(
    held: HeldGroup | None, guarded: bool, last: Position | None, back_to: int, tx_pos: Position, at: int
) -> None:
    """A rollback (to a savepoint set at row index ``back_to``) undid the transactional rows since."""
    if held is not None:
        held.rollback_from(back_to)
    elif not guarded and last is not None and last.row >= back_to:
        # Only groups without FL_TRANSACTIONAL are held (the server logs rollbacks in no other),
        # and only up to the hold limit.
        raise SourceProtocolError(
            f"a rollback at {tx_pos.file}:{at} in transaction {where(tx_pos)} undoes row changes "
            "already emitted: either its GTID event did not announce a non-transactional write, "
            "or the transaction held more row changes than the decoder's hold limit (500,000). The "
            "copies cannot be kept exact through it: add the tables it wrote to source.exclude_tables "
            "to go on, and recover their copies (docs/operations.md, Recovery) when you include them again"
        )
