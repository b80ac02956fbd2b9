"""PostgreSQL positions: commit LSN + row index, in the shared Position type, with their own text form."""

from __future__ import annotations

import random

import pytest

from cdc.core.errors import PositionFormatError
from cdc.core.positions import Gtid, Position, RestartPoint, lsn_position


def test_text_form_round_trips_and_names_the_lsn() -> None:
    p = lsn_position(0x16_B374D848, 3, 771)
    assert p.lsn == 0x16_B374D848
    assert p.lsn_text == "16/B374D848"
    text = p.to_string()
    assert text.startswith("pgl1:")
    assert Position.parse(text) == p
    assert Position.parse(text).lsn == p.lsn
    restart = RestartPoint.after(p)
    assert RestartPoint.parse(restart.to_string()) == restart


def test_text_order_is_position_order() -> None:
    rng = random.Random(7)
    positions = [
        lsn_position(
            rng.choice([0, 1, 2**32 - 1, 2**32, 2**40 + 5, 2**64 - 3]) + rng.randrange(3),
            rng.randrange(12),
            rng.randrange(2**32),
        )
        for _ in range(400)
    ]
    by_value = sorted(set(positions))
    by_text = sorted(set(positions), key=lambda p: p.to_string())
    assert [p.to_string() for p in by_value] == [p.to_string() for p in by_text]


def test_never_confused_with_a_mariadb_position() -> None:
    mdb = Position(Gtid(0, 1, 5), "mariadb-bin.000022", 3010, 0)
    assert mdb.lsn is None
    assert not mdb.to_string().startswith("pgl1:")
    pg = lsn_position(22 * 2**32 + 3010, 0, 5)
    assert pg != mdb
    assert pg.to_string() != mdb.to_string()
    # a MariaDB text with the PostgreSQL tag, or a PostgreSQL text of a later era, is refused
    with pytest.raises(PositionFormatError):
        Position.parse("pgl1:" + mdb.to_string()[5:])
    with pytest.raises(PositionFormatError):
        Position.parse(pg.to_string()[:-1])


def test_rows_of_one_transaction_share_its_prefix() -> None:
    # the envelope splices the row index into the text at a fixed offset (27..37), as for MariaDB
    p = lsn_position(2**33 + 17, 0, 9)
    q = p.at_row(12)
    assert q.lsn == p.lsn
    assert q.to_string()[:27] == p.to_string()[:27]
    assert q.to_string()[27:37] == "0000000012"
    assert q.to_string()[37:] == p.to_string()[37:]
