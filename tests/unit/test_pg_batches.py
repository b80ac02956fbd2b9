"""The decoder's batched ChangeEvents (compiled EventMaker) against the same events made one by one."""

from __future__ import annotations

import struct

from cdc.core import change_batches
from cdc.core.change_batches import python_changes
from cdc.core.events import ChangeEvent, Op, TransactionEnd
from cdc.core.positions import RestartPoint, lsn_position
from cdc.sources.postgresql.pgoutput import PgoutputDecoder
from tests.unit.test_pg_decoder import begin, commit, decoder, insert, relation, tup

FULL = 16401


def _update(old_kind: bytes, old: bytes, new: bytes, relid: int = 16400) -> bytes:
    return b"U" + struct.pack("!I", relid) + old_kind + old + b"N" + new


def _workload() -> list[bytes]:
    """Every kind of row message, crossing batch boundaries (300 inserts > _BATCH_MAX)."""
    msgs = [relation(), relation(FULL, "f", "f"), begin(0x500, 7)]
    msgs += [insert(str(i).encode(), b"a") for i in range(300)]
    msgs += [insert(b"1", b"f", relid=FULL), insert(b"2", None, relid=FULL)]
    msgs += [b"U" + struct.pack("!I", 16400) + b"N" + tup(b"5", b"b")]  # DEFAULT: no before
    msgs += [b"D" + struct.pack("!I", 16400) + b"K" + tup(b"6", None)]
    msgs += [_update(b"K", tup(b"7", None), tup(b"1007", b"c"))]  # the key changed: d then c
    msgs += [_update(b"O", tup(b"1", b"f"), tup(b"1", b"g"), FULL)]  # FULL: before and after
    msgs += [insert(b"400", b"z")]
    msgs += [b"T" + struct.pack("!IB", 1, 0) + struct.pack("!I", 16400)]
    msgs += [commit(0x500)]
    return msgs


def _events(d: PgoutputDecoder, msgs: list[bytes]) -> list[object]:
    out: list[object] = []
    for m in msgs:
        out += d.feed(m)
    return out


def test_batched_events_are_the_events_one_by_one_in_message_order() -> None:
    assert change_batches.MAKE_CHANGES is not python_changes, "headwater_native's EventMaker is not installed"
    records = _events(decoder(), _workload())
    *events, end = records
    assert isinstance(end, TransactionEnd) and end.row_count == len(events) == 309
    assert all(isinstance(e, ChangeEvent) for e in events)
    evs = [e for e in events if isinstance(e, ChangeEvent)]
    assert [e.position for e in evs] == [lsn_position(0x500, r, 7) for r in range(309)]
    ops = "".join(e.op.value for e in evs)
    assert ops == "c" * 302 + "u" + "d" + "dc" + "u" + "c" + "t"
    assert (evs[0].key, evs[0].before, evs[0].after) == ((0,), None, (0, "a"))
    assert (evs[300].schema.table, evs[300].after, evs[301].after) == ("f", (1, "f"), (2, None))
    assert (evs[302].key, evs[302].before, evs[302].after) == ((5,), None, (5, "b"))
    assert (evs[303].op, evs[303].key, evs[303].before, evs[303].after) == (Op.DELETE, (6,), (6, None), None)
    assert (evs[304].key, evs[305].key, evs[305].after) == ((7,), (1007,), (1007, "c"))
    assert (evs[306].before, evs[306].after) == ((1, "f"), (1, "g"))
    assert (evs[308].op, evs[308].key, evs[308].after) == (Op.TRUNCATE, None, None)
    assert end.restart == RestartPoint(lsn_position(0x500, 0, 7), 309)

    # the Python reference makes equal events; a restart inside the transaction skips exactly k rows
    reference = decoder()
    reference._make = python_changes
    assert _events(reference, _workload()) == records
    resumed = _events(decoder(RestartPoint(lsn_position(0x500, 0, 7), 299)), _workload())
    assert resumed[:-1] == records[299:-1]
    positions = [e.position for e in resumed if isinstance(e, ChangeEvent)]
    assert positions[0] == lsn_position(0x500, 299, 7) and len(positions) == 10
