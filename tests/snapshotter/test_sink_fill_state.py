"""The sink fill's write-ahead progress file: what a restart reads back, and how a landed chunk moves
the fill on. No services needed."""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path

import pytest

from cdc.core.errors import PositionFormatError
from cdc.core.positions import Gtid, Position, RestartPoint
from cdc.core.schemas import TableRef
from snapshotter.sink_fill_state import (
    FillState,
    PendingChunk,
    TableFill,
    progress_path,
    read_state,
    write_state,
)

VIEW = RestartPoint(Position(Gtid(0, 1, 42), "mariadb-bin.000007", 5000), 0)
ITEMS, PAIRS = TableRef("d", "items"), TableRef("d", "pairs")


def _state() -> FillState:
    key = (7, "K1", b"\x00\xff", decimal.Decimal("1.50"), dt.datetime(2024, 1, 2, 3, 4, 5, 6), 1.25)
    pending = PendingChunk(PAIRS, key, (9, "z", b"", decimal.Decimal("0"), dt.datetime(2024, 1, 1), 0.0),
                           False, True, 10, 15, 5)  # fmt: skip
    return FillState(
        "wiki", "late", True, False, VIEW, VIEW, {"wiki.d.items:0": 12, "wiki.d.items:1": 0},
        (TableFill(ITEMS, (3,), True, True, 9), TableFill(PAIRS)), 10, pending,
    )  # fmt: skip


def test_the_file_reads_back_exactly(tmp_path: Path) -> None:
    path = progress_path(tmp_path, "wiki", "late")
    assert path.name == "sink-bootstrap-wiki-late.json"
    state = _state()
    write_state(path, state)
    assert read_state(path) == state
    assert read_state(tmp_path / "none.json") is None


def test_positions_are_anchor_rows_just_before_the_view() -> None:
    state = _state()
    first, last = state.position(0), state.position(15)
    assert first.is_snapshot_anchor and last.is_snapshot_anchor
    assert first.offset == VIEW.transaction.offset - 1 and (first.row, last.row) == (0, 15)
    assert RestartPoint.after(last).binlog_offset == VIEW.binlog_offset  # the stream resumes at the view


def test_a_landed_chunk_moves_its_table_on() -> None:
    state = _state()
    assert state.pending is not None
    moved = state.landed()
    assert moved.pending is None and moved.next_index == 16
    pairs = moved.table(PAIRS)
    assert pairs.after == state.pending.last_key and pairs.truncated and not pairs.done and pairs.rows == 5
    assert moved.table(ITEMS) == state.table(ITEMS)


def test_a_damaged_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = progress_path(tmp_path, "wiki", "late")
    path.write_text('{"format": 1, "pipeline": "wiki"}')
    with pytest.raises(PositionFormatError, match=r"sink-bootstrap-wiki-late\.json"):
        read_state(path)
