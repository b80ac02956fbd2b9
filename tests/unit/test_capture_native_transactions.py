"""The stream decoder's compiled transaction start and end (EVENT_MAKER.transaction_start and
transaction_end) give the objects the Python constructors give: equal, same hash, order, text form,
context and slots."""

from __future__ import annotations

import random

from cdc.core.events import TransactionEnd
from cdc.core.positions import Gtid, GtidState, Position, ReadContext
from cdc.sources.mariadb.native_rows import EVENT_MAKER


def test_transaction_start_equals_the_python_objects() -> None:
    rnd = random.Random(5)
    context = ReadContext(7, GtidState((Gtid(0, 7, 41),)))
    for era in (0, 4):
        file_pos = Position(Gtid(0, 1, 1), "mariadb-bin.000042", 4, 0, era)
        for _ in range(200):
            domain = rnd.choice((0, 1, 2**32 - 1))
            server = rnd.choice((1, 7, 2**32 - 1))
            seq = rnd.choice((1, 99, 2**64 - 1, rnd.randrange(1, 2**64)))
            offset = rnd.choice((0, 4, 2**32 - 1, rnd.randrange(2**32)))
            ctx = rnd.choice((None, context))
            gtid, position, tx_id = EVENT_MAKER.transaction_start(file_pos, domain, server, seq, offset, ctx)
            want_gtid = Gtid(domain, server, seq)
            want = file_pos.in_same_file(want_gtid, offset, 0, ctx)
            assert type(gtid) is Gtid and type(position) is Position
            assert gtid == want_gtid and hash(gtid) == hash(want_gtid)
            assert str(gtid) == tx_id == str(want_gtid)
            assert position == want and hash(position) == hash(want)
            assert position._key == want._key and position.to_string() == want.to_string()
            assert position.context is ctx and position.era == era and position.row == 0
            assert Position.parse(position.to_string()) == want
            assert not position < want and not want < position


def test_transaction_end_equals_the_python_object() -> None:
    last = Position(Gtid(0, 1, 5), "bin.000001", 900, 3)
    end = EVENT_MAKER.transaction_end("0-1-5", last, 4, 1_700_000_000_000, 1234)
    assert type(end) is TransactionEnd
    assert end == TransactionEnd("0-1-5", last, 4, 1_700_000_000_000, 1234)
    assert end.restart == TransactionEnd("0-1-5", last, 4, 1_700_000_000_000, 1234).restart
