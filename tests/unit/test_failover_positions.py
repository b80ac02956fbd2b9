"""Eras and GTID states in positions and restart points (issue 8, item 16: resume by GTID)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdc.core.errors import PositionFormatError
from cdc.core.positions import (
    Gtid,
    GtidState,
    Position,
    ReadContext,
    RestartPoint,
    snapshot_row_position,
)

u32 = st.integers(0, 2**32 - 1)
gtids = st.builds(Gtid, u32, u32, st.integers(0, 2**64 - 1))
files = st.builds(
    lambda base, seq: f"{base}.{seq:06d}",
    st.sampled_from(["mysql-bin", "mariadb-bin", "bin"]),
    st.integers(1, 9_999_999_999),
)
eras = st.one_of(st.just(0), st.integers(0, 9_999_999_999))
positions = st.builds(Position, gtids, files, u32, st.integers(0, 9_999_999_999), eras)

ERA0 = "mdb1:0000000003:0000000120:0000000002:0000000000-0000000001-00000000000000000042:mysql-bin"


@given(positions)
def test_round_trip_in_every_era(p: Position) -> None:
    parsed = Position.parse(p.to_string())
    assert parsed == p and parsed.era == p.era and parsed.file == p.file
    assert parsed.at_row(3).era == p.era


@given(positions, positions)
def test_text_order_is_position_order_across_eras(a: Position, b: Position) -> None:
    assert (a < b) == (a.to_string() < b.to_string())
    assert (a == b) == (a.to_string() == b.to_string())


def test_era_zero_text_is_unchanged() -> None:
    # Stored in users' sinks and histories before eras existed: must stay byte-identical.
    p = Position(Gtid(0, 1, 42), "mysql-bin.000003", 120, 2)
    assert p.to_string() == ERA0
    assert Position.parse(ERA0) == p and Position.parse(ERA0).era == 0


def test_a_later_era_sorts_after_every_earlier_position() -> None:
    old = Position(Gtid(0, 1, 9_000), "mysql-bin.999999", 2**32 - 1, 9_999_999_999)
    new = Position(Gtid(0, 2, 1), "mysql-bin.000001", 4, 0, era=1)
    assert old < new and old.to_string() < new.to_string()
    assert new.to_string().startswith("mdb2:0000000001:0000000001:")
    assert Position.parse(new.to_string()) == new
    newer = new.in_same_file(Gtid(0, 2, 2), 8)
    assert newer.era == 1 and new < newer


def test_era_zero_in_the_era_form_is_refused() -> None:
    with pytest.raises(PositionFormatError, match="era 0"):
        Position.parse("mdb2:0000000000:" + ERA0[5:])


def test_gtid_state_text_and_coverage() -> None:
    state = GtidState.parse("1-3-7, 0-1-42")
    assert str(state) == "0-1-42,1-3-7"
    assert state.covers(Gtid(0, 2, 40)) and state.covers(Gtid(0, 1, 42))
    assert not state.covers(Gtid(0, 1, 43)) and not state.covers(Gtid(2, 1, 1))
    assert str(state.advanced(Gtid(1, 3, 8))) == "0-1-42,1-3-8"
    assert str(state.advanced(Gtid(2, 5, 1))) == "0-1-42,1-3-7,2-5-1"
    assert GtidState.parse("") == GtidState()
    with pytest.raises(PositionFormatError):
        GtidState.parse("0-1-1,0-2-2")


def test_restart_point_carries_its_read_context() -> None:
    context = ReadContext(7, GtidState.parse("0-1-41,1-3-7"))
    tx = Position(Gtid(0, 1, 42), "mysql-bin.000003", 120, 0, era=2, context=context)
    point = RestartPoint.after(tx.at_row(4))
    assert point.context == context and point.skip_rows == 5
    text = point.to_string()
    assert text.endswith("+skip=0000000005+source=7+gtids=0-1-41,1-3-7")
    loaded = RestartPoint.parse(text)
    assert loaded == point and loaded.context == context and loaded.transaction.era == 2


def test_old_restart_points_still_parse() -> None:
    point = RestartPoint.parse(ERA0.replace(":0000000002:", ":0000000000:", 1) + "+skip=0000000003")
    assert point.context is None and point.skip_rows == 3 and point.transaction.era == 0


def test_empty_gtid_state_round_trips() -> None:
    tx = Position(Gtid(0, 0, 0), "mysql-bin.000001", 4, context=ReadContext(1, GtidState()))
    loaded = RestartPoint.parse(RestartPoint(tx).to_string())
    assert loaded.context == ReadContext(1, GtidState())


def test_snapshot_anchor_keeps_era_and_context() -> None:
    context = ReadContext(7, GtidState.parse("0-1-41"))
    boundary = RestartPoint(Position(Gtid(0, 1, 41), "mysql-bin.000003", 500, 0, era=1, context=context))
    anchor = snapshot_row_position(boundary, 0)
    assert anchor.is_snapshot_anchor and anchor.era == 1 and anchor.context == context
    resume = RestartPoint.after(snapshot_row_position(boundary, 5))
    assert resume.is_boundary and resume.binlog_offset == 500 and resume.context == context
    assert resume.transaction.era == 1
    before = Position(Gtid(0, 1, 40), "mysql-bin.000003", 400, 3, era=1)
    assert before < anchor < Position(Gtid(0, 1, 42), "mysql-bin.000003", 500, 0, era=1)
