"""The write-ahead progress file of `cdc bootstrap --sink NAME` (see :mod:`snapshotter.sink_fill`).

``<state_dir>/sink-bootstrap-<pipeline>-<sink>.json``, replaced atomically before every chunk is
applied. It records the first view's boundary (the anchor every row position counts from), the Kafka
end offsets taken before that view, each table's progress (the key the next chunk starts after), and
the chunk about to be applied: the key it starts after, its last key, and the positions it takes.
On a restart the sink's ``applied()`` says whether that chunk landed (each chunk is applied in one
atomic batch): at or past its last position it did, and the fill continues after its last key;
below its first position it did not, and it is read again (in a new view) at the same positions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cdc.core.errors import PositionFormatError
from cdc.core.events import RowImage
from cdc.core.positions import Position, RestartPoint, snapshot_row_position
from cdc.core.schemas import TableRef
from snapshotter.state import decode_key, encode_key

__all__ = ["FillState", "PendingChunk", "TableFill", "progress_path", "read_state", "write_state"]

_FORMAT = 1


def progress_path(state_dir: Path, pipeline: str, sink: str) -> Path:
    return state_dir / f"sink-bootstrap-{pipeline}-{sink}.json"


@dataclass(frozen=True, slots=True)
class TableFill:
    table: TableRef
    after: RowImage | None = None  # the key the next chunk starts after (None: from the start)
    truncated: bool = False  # its TRUNCATE (replace / Kafka mode) has landed
    done: bool = False
    rows: int = 0  # rows landed


@dataclass(frozen=True, slots=True)
class PendingChunk:
    """The chunk being applied: rows at indexes ``first..last`` of the anchor (a TRUNCATE first
    when ``truncate``)."""

    table: TableRef
    after: RowImage | None
    last_key: RowImage | None
    complete: bool  # the table ends with this chunk
    truncate: bool
    first: int
    last: int
    rows: int


@dataclass(frozen=True, slots=True)
class FillState:
    pipeline: str
    sink: str
    kafka: bool
    replace: bool
    base: RestartPoint  # row i of the fill is at snapshot_row_position(base, i)
    view: RestartPoint  # the boundary of the first view (informative: base counts from it)
    offsets: Mapping[str, int]  # Kafka mode: "topic:partition" -> end offset taken before the view
    tables: tuple[TableFill, ...]
    next_index: int = 0
    pending: PendingChunk | None = None
    finished: bool = False

    def position(self, index: int) -> Position:
        return snapshot_row_position(self.base, index)

    def table(self, ref: TableRef) -> TableFill:
        return next(t for t in self.tables if t.table == ref)

    def with_table(self, fill: TableFill) -> FillState:
        return replace(self, tables=tuple(fill if t.table == fill.table else t for t in self.tables))

    def landed(self) -> FillState:
        """The pending chunk has landed: its table moves on past it."""
        chunk = self.pending
        if chunk is None:
            return self
        fill = self.table(chunk.table)
        moved = TableFill(
            chunk.table,
            chunk.last_key if chunk.last_key is not None else fill.after,
            fill.truncated or chunk.truncate,
            chunk.complete,
            fill.rows + chunk.rows,
        )
        return replace(self.with_table(moved), pending=None, next_index=max(self.next_index, chunk.last + 1))

    def to_json(self) -> str:
        def key(k: RowImage | None) -> Any:
            return None if k is None else encode_key(k)

        pending = self.pending
        return json.dumps(
            {
                "format": _FORMAT,
                "pipeline": self.pipeline,
                "sink": self.sink,
                "kafka": self.kafka,
                "replace": self.replace,
                "base": self.base.to_string(),
                "view": self.view.to_string(),
                "offsets": dict(self.offsets),
                "next_index": self.next_index,
                "finished": self.finished,
                "tables": [
                    {
                        "table": str(t.table),
                        "after": key(t.after),
                        "truncated": t.truncated,
                        "done": t.done,
                        "rows": t.rows,
                    }
                    for t in self.tables
                ],
                "pending": None
                if pending is None
                else {
                    "table": str(pending.table),
                    "after": key(pending.after),
                    "last_key": key(pending.last_key),
                    "complete": pending.complete,
                    "truncate": pending.truncate,
                    "first": pending.first,
                    "last": pending.last,
                    "first_position": self.position(pending.first).to_string(),
                    "last_position": self.position(pending.last).to_string(),
                    "rows": pending.rows,
                },
            },
            indent=1,
        )


def _ref(text: str) -> TableRef:
    db, _, table = text.partition(".")
    return TableRef(db, table)


def _key(raw: Sequence[Sequence[Any]] | None) -> RowImage | None:
    return None if raw is None else decode_key(raw)


def read_state(path: Path) -> FillState | None:
    """The recorded fill, or None; a file that cannot be read is an error naming it (never ignored:
    starting over would apply rows twice to a history sink)."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    try:
        if raw["format"] != _FORMAT:
            raise ValueError(f"format {raw['format']!r}, expected {_FORMAT}")
        p = raw["pending"]
        pending = None
        if p is not None:
            pending = PendingChunk(
                _ref(p["table"]), _key(p["after"]), _key(p["last_key"]), bool(p["complete"]),
                bool(p["truncate"]), int(p["first"]), int(p["last"]), int(p["rows"]),
            )  # fmt: skip
        return FillState(
            str(raw["pipeline"]),
            str(raw["sink"]),
            bool(raw["kafka"]),
            bool(raw["replace"]),
            RestartPoint.parse(raw["base"]),
            RestartPoint.parse(raw["view"]),
            {str(k): int(v) for k, v in raw["offsets"].items()},
            tuple(
                TableFill(
                    _ref(t["table"]), _key(t["after"]), bool(t["truncated"]), bool(t["done"]), int(t["rows"])
                )
                for t in raw["tables"]
            ),
            int(raw["next_index"]),
            pending,
            bool(raw["finished"]),
        )
    except (ValueError, KeyError, TypeError, PositionFormatError) as exc:
        raise PositionFormatError(
            f"{path} (the progress of a sink fill) is not valid: {exc}. Empty the sink and delete the "
            "file to fill it again from the start"
        ) from exc


def write_state(path: Path, state: FillState) -> None:
    """Replace the file so that a crash leaves the old one or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as out:
        out.write(state.to_json() + "\n")
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)
