import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdc.core import Gtid, Position, PositionFormatError, RestartPoint

u32 = st.integers(0, 2**32 - 1)
gtids = st.builds(Gtid, u32, u32, st.integers(0, 2**64 - 1))
files = st.builds(
    lambda base, seq: f"{base}.{seq:06d}",
    st.sampled_from(["mysql-bin", "mariadb-bin", "bin", "a-b_c"]),
    st.integers(1, 9_999_999_999),
)
positions = st.builds(Position, gtids, files, u32, st.integers(0, 9_999_999_999))


@given(positions)
def test_round_trip(p: Position) -> None:
    assert Position.parse(p.to_string()) == p
    assert Position.parse(p.to_string()).file == p.file


@given(positions, positions)
def test_string_order_is_position_order(a: Position, b: Position) -> None:
    assert (a < b) == (a.to_string() < b.to_string())
    assert (a == b) == (a.to_string() == b.to_string())


def test_file_sequence_compares_as_number() -> None:
    g = Gtid(0, 1, 5)
    a = Position(g, "mysql-bin.999999", 4_000_000)
    b = Position(g, "mysql-bin.1000000", 4)
    assert a < b and a.to_string() < b.to_string()


def test_order_is_offset_then_row() -> None:
    g = Gtid(0, 1, 5)
    assert Position(g, "b.000001", 100, 7) < Position(g, "b.000001", 101, 0)
    assert Position(g, "b.000001", 100, 1) < Position(g, "b.000001", 100, 2)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "mdb1:0000000001:0000000004:0000000000:0000000000-0000000001-00000000000000000005",  # no base
        "mdb1:0000000001:0000000004:0000000000:0000000000-0000000001-00000000000000000005:",
        "mdb1:1:4:0:0-1-5:bin",  # not padded
        "mdb2:0000000001:0000000004:0000000000:0000000000-0000000001-00000000000000000005:bin",
        "mdb1:0000000001:9999999999:0000000000:0000000000-0000000001-00000000000000000005:bin",  # offset>u32
        "mdb1:0000000001:0000000004:0000000000:0000000000-0000000001-99999999999999999999:bin",  # seq > u64
        "mdb1:0000000000:0000000004:0000000000:0000000000-0000000001-00000000000000000005:bin x",
    ],
)
def test_parse_refuses_malformed(text: str) -> None:
    with pytest.raises(PositionFormatError):
        Position.parse(text)


def test_constructor_refuses_bad_fields() -> None:
    with pytest.raises(PositionFormatError):
        Position(Gtid(0, 1, 1), "mysql-bin.1", 4)  # not canonical (MariaDB pads to 6)
    with pytest.raises(PositionFormatError):
        Position(Gtid(0, 1, 1), "mysql-bin.000001", -1)
    with pytest.raises(PositionFormatError):
        Gtid.parse("0-1")


@given(positions, st.integers(0, 1000))
def test_restart_point_round_trip(p: Position, skip: int) -> None:
    p = p.at_row(p.row % 1_000_000)
    rp = RestartPoint(p.at_row(0), skip)
    assert RestartPoint.parse(rp.to_string()) == rp
    assert RestartPoint.after(p) == RestartPoint(p.at_row(0), p.row + 1)


def test_restart_point_refuses_mid_transaction_start() -> None:
    with pytest.raises(PositionFormatError):
        RestartPoint(Position(Gtid(0, 1, 1), "b.000001", 4, 3))
    with pytest.raises(PositionFormatError):
        RestartPoint.parse("mdb1:garbage+skip=0000000001")


@given(positions, gtids, u32, st.integers(0, 100))
def test_fast_constructors_equal_validated_ones(p: Position, g: Gtid, offset: int, row: int) -> None:
    assert p.at_row(row) == Position(p.gtid, p.file, p.offset, row)
    moved = p.in_same_file(g, offset, row)
    assert moved == Position(g, p.file, offset, row)
    assert moved.to_string() == Position(g, p.file, offset, row).to_string()


# --- snapshot rows: positions between transactions -------------------------------------------------


def test_snapshot_rows_at_a_boundary_sort_between_the_transactions_around_it() -> None:
    from cdc.core.positions import snapshot_row_position

    before = Position(Gtid(0, 1, 7), "bin.000002", 900, 3)  # last row of the transaction before
    boundary = RestartPoint(Position(Gtid(0, 1, 7), "bin.000002", 1000))
    after = Position(Gtid(0, 1, 8), "bin.000002", 1000, 0)  # first row of the next transaction
    rows = [snapshot_row_position(boundary, i) for i in range(3)]
    assert before < rows[0] < rows[1] < rows[2] < after
    assert all(r.is_snapshot_anchor for r in rows)
    assert Position.parse(rows[2].to_string()) == rows[2]
    # resuming after them reads the binlog from the boundary and skips nothing
    resume = RestartPoint.after(rows[2])
    assert resume.is_boundary and resume.binlog_offset == 1000
    again = RestartPoint.parse(resume.to_string())
    assert snapshot_row_position(again, 0) > rows[2]  # the next chunk continues after them
    assert snapshot_row_position(again, 0) < after


def test_snapshot_rows_after_a_transaction_follow_its_rows() -> None:
    from cdc.core.positions import snapshot_row_position

    tx = Position(Gtid(0, 1, 7), "bin.000002", 900, 0)
    point = RestartPoint(tx, 4)  # four rows of it emitted
    first = snapshot_row_position(point, 0)
    assert first == tx.at_row(4) and not first.is_snapshot_anchor
    assert not point.is_boundary and point.binlog_offset == 900
    assert snapshot_row_position(RestartPoint.after(first), 0) == tx.at_row(5)


def test_a_fresh_servers_boundary_is_not_an_anchor() -> None:
    fresh = RestartPoint(Position(Gtid(0, 0, 0), "bin.000001", 330))
    assert not fresh.transaction.is_snapshot_anchor and fresh.binlog_offset == 330
