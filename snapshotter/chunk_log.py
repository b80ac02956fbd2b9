"""Embedded mode's write-ahead log of the snapshot chunk being applied.

The sinks commit one after the other, and the state file after them; a crash in between must not
leave a chunk in some sinks but not others, nor send it twice to a history. So the chunk's records
(and the state that follows them) are written here before any sink sees them, and removed once every
sink has committed them and the state file says so. After a crash the daemon emits the logged
records again, at their logged positions, at the same place in the stream: sinks skip what they
hold (by position) and take what they lack.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from cdc.core.errors import ConfigError
from cdc.core.events import ChangeEvent, Op, RowImage
from cdc.core.positions import Position
from cdc.core.schemas import TableSchema
from sinks.arrow_rows import ArrowRows
from sinks.read_batch import ReadBatch
from snapshotter.chunk_columns import PackedRows, pack_rows, unpack_rows

__all__ = ["ChunkLog", "LoggedChunk"]


@dataclass(frozen=True, slots=True)
class LoggedChunk:
    records: Sequence[ChangeEvent]  # read back: a tuple
    state: str  # the snapshot state once these records are applied


class ChunkLog:
    def __init__(self, state_dir: Path, pipeline: str) -> None:
        self.path = Path(state_dir) / f"snapshot-chunk-{pipeline}.pickle"

    def write(self, chunk: LoggedChunk) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("wb") as out:
            # our own file, read back only by this code: pickle keeps the typed values as they are
            pickle.dump((_compact(chunk.records), chunk.state), out, protocol=pickle.HIGHEST_PROTOCOL)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(self.path)

    def read(self) -> LoggedChunk | None:
        try:
            with self.path.open("rb") as src:
                compact, state = pickle.load(src)
            records = _expand(compact)
        except FileNotFoundError:
            return None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
            raise ConfigError(f"the snapshot chunk log {self.path} is unreadable ({exc})") from exc
        return LoggedChunk(records, str(state))

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


# A ReadBatch (embedded mode without column policies) is kept as what its rows share and its rows,
# column by column (chunk_columns.py: pickling the row tuples was the Iceberg bootstrap's top cost).
_Read = tuple[str, TableSchema, str, int, str, ChangeEvent | None, PackedRows]
_READ = "read-columns"
# One whose rows are Arrow columns (sinks/arrow_rows.py) keeps the arrays: pickled as their buffers
_READ_ARROW = "read-arrow"

# A chunk's records share their schema, time and transaction id, and their positions are one run of
# rows of one anchor: only (op, key, before, after) is kept per row, as plain tuples. Pickling the
# ChangeEvent dataclasses themselves was a third of an embedded bootstrap's time (its profile).
_Row = tuple[str, RowImage | None, RowImage | None, RowImage | None]
_Compact = tuple[TableSchema, str, int, str, tuple[_Row, ...]]


def _compact(records: Sequence[ChangeEvent]) -> _Read | _Compact | tuple[ChangeEvent, ...]:
    if isinstance(records, ReadBatch):
        b = records
        if b.arrow is not None:
            arrow = (b.arrow.n, b.arrow.arrays)
            return (
                _READ_ARROW,
                b.schema,
                b.first.to_string(),
                b.source_ts_ms,
                b.transaction_id,
                b.lead,
                arrow,
            )
        made = b.packed  # made ahead on the snapshot reader's thread (chunk_feed.py), or now
        packed = cast(PackedRows, made) if made is not None else pack_rows(b.schema, b.columns(), len(b.rows))
        return (_READ, b.schema, b.first.to_string(), b.source_ts_ms, b.transaction_id, b.lead, packed)
    records = tuple(records)
    if not records:
        return records
    first = records[0]
    row0 = first.position.row
    if any(r.position.row != row0 + i or r.schema is not first.schema for i, r in enumerate(records)):
        return records  # not one run of rows (none is made so today): kept whole
    rows = tuple((r.op.value, r.key, r.before, r.after) for r in records)
    return (first.schema, first.position.to_string(), first.source_ts_ms, first.transaction_id, rows)


def _expand(compact: _Read | _Compact | tuple[ChangeEvent, ...]) -> tuple[ChangeEvent, ...]:
    if not compact or isinstance(compact[0], ChangeEvent):
        return tuple(compact)
    if len(compact) == 7 and compact[0] == _READ_ARROW:
        _, schema, read_first, ts_ms, txn, lead, (n, arrays) = compact
        arrow_rows = ArrowRows(arrays, n)
        return tuple(ReadBatch(schema, arrow_rows, Position.parse(read_first), ts_ms, txn, lead))
    if len(compact) == 7 and compact[0] == _READ:
        _, schema, read_first, ts_ms, txn, lead, packed = compact
        read_rows = unpack_rows(packed)
        return tuple(ReadBatch(schema, read_rows, Position.parse(read_first), ts_ms, txn, lead))
    schema, first_text, ts_ms, txn, rows = cast(_Compact, compact)
    first = Position.parse(first_text)
    at_row, row0 = first.at_row, first.row
    return tuple(
        ChangeEvent(Op(op), schema, key, before, after, at_row(row0 + i), ts_ms, txn)
        for i, (op, key, before, after) in enumerate(rows)
    )
