"""Position.parse remembers a transaction's fields (cdc sink parses one position per change): the rows of
a remembered transaction parse to the same positions as a fresh parse, and a malformed row field is
still refused."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.core import Gtid, Position, PositionFormatError
from cdc.core import positions as positions_module

rows = st.integers(0, 9_999_999_999)


@settings(max_examples=40)
@given(st.integers(0, 9_999_999_999), rows, rows)
def test_rows_of_a_remembered_transaction_parse_like_fresh(era: int, first: int, other: int) -> None:
    tx = Position(Gtid(3, 7, 41), "mariadb-bin.000060", 1941, first, era)
    assert Position.parse(tx.to_string()) == tx  # now remembered
    again = tx.at_row(other)
    parsed = Position.parse(again.to_string())
    assert parsed == again and parsed.row == other and parsed.era == era
    assert parsed.file == "mariadb-bin.000060" and parsed.gtid == Gtid(3, 7, 41)
    assert parsed.to_string() == again.to_string()


@pytest.mark.parametrize("era", [0, 12])
@pytest.mark.parametrize(
    "row", ["00000000a1", " 000000001", "+000000001", "\u0661" * 10, "0000_00001", "00000001"]
)
def test_a_bad_row_field_of_a_remembered_transaction_is_refused(era: int, row: str) -> None:
    text = Position(Gtid(0, 1, 9), "bin.000002", 77, 5, era).to_string()
    Position.parse(text)
    cut = 27 if era == 0 else 38
    bad = text[:cut] + row + text[cut + 10 :]
    with pytest.raises(PositionFormatError):
        Position.parse(bad)


def test_the_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(positions_module, "_TXN_MEMO_MAX", 50)
    for seq in range(1, 120):
        p = Position(Gtid(0, 1, seq), "bin.000002", 100 + seq, 1)
        assert Position.parse(p.to_string()) == p
        assert len(positions_module._TXN_MEMO) <= 50
