"""ChangeEvents of consecutive rows of one transaction, table and kind, built in one call.

``MAKE_CHANGES(op, schema, key_indexes, inserted, images, tx_pos, row, ts_ms, transaction_id)``
gives ``ChangeEvent(op, schema, key, None/image, image/None, tx_pos.at_row(row + i), ts_ms,
transaction_id)`` per image. The compiled EventMaker (native/headwater_native, built by
scripts/setup.sh) fills the frozen dataclasses' slots directly: a frozen dataclass ``__init__`` and
``Position.at_row`` per row were a third of a decoder's time. The PostgreSQL decoder and the
snapshotter's op ``r`` rows use it; :func:`python_changes` is the same in Python (without the
compiled module, and the tests' reference).
"""

from __future__ import annotations

from collections.abc import Callable

from cdc.core.events import ChangeEvent, Op, RowImage, SourceRecord
from cdc.core.positions import Position
from cdc.core.schemas import TableSchema

__all__ = ["MAKE_CHANGES", "Changes", "python_changes"]

Changes = Callable[
    [Op, TableSchema, tuple[int, ...], bool, list[RowImage], Position, int, int, str], list[SourceRecord]
]


def python_changes(
    op: Op,
    schema: TableSchema,
    key_indexes: tuple[int, ...],
    inserted: bool,
    images: list[RowImage],
    tx_pos: Position,
    row: int,
    ts_ms: int,
    transaction_id: str,
) -> list[SourceRecord]:
    """What the compiled EventMaker gives, in Python (without headwater_native, and its reference)."""
    out: list[SourceRecord] = []
    for i, image in enumerate(images):
        key = tuple(image[k] for k in key_indexes) if key_indexes else None
        before, after = (None, image) if inserted else (image, None)
        position = tx_pos.at_row(row + i)
        out.append(ChangeEvent(op, schema, key, before, after, position, ts_ms, transaction_id))
    return out


def _compiled_changes() -> Changes:
    try:
        from headwater_native import EventMaker
    except ImportError:  # pragma: no cover - a checkout whose setup did not build it
        return python_changes
    changes: Changes = EventMaker(ChangeEvent, Position).changes
    return changes


MAKE_CHANGES = _compiled_changes()
