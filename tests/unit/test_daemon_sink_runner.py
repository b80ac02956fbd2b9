"""`cdc sink`'s pure parts: the truncate barrier over partitions, and per-sink batches by offset."""

from __future__ import annotations

from cdc.core.events import ChangeEvent, Op
from cdc.core.positions import Gtid, Position
from cdc.daemon.sink_runner import _batch_for
from cdc.daemon.truncate_barrier import BarrierTruncate, TruncateBarrier
from cdc.stream.kafka_reader import ConsumedChange
from tests.unit.test_daemon_capture import SCHEMA

TOPIC = "p.db.t"


def change(seq: int, partition: int, offset: int, op: Op = Op.CREATE) -> ConsumedChange:
    pos = Position(Gtid(0, 1, seq), "bin.000001", 100 * seq)
    key = None if op is Op.TRUNCATE else (seq,)
    after = None if op is Op.TRUNCATE else (seq,)
    event = ChangeEvent(op, SCHEMA, key, None, after, pos, 0, str(pos.gtid))
    return ConsumedChange(event, f"{TOPIC}:{partition}", offset + 1)


def labels(items: list[object]) -> list[str]:
    out = []
    for item in items:
        if isinstance(item, BarrierTruncate):
            out.append(f"T{sorted(item.offsets)}")
        else:
            assert isinstance(item, ConsumedChange)
            out.append(f"{item.event.op.value}{item.event.position.gtid.seq}")
    return out


def test_truncate_waits_for_every_partition_copy() -> None:
    barrier = TruncateBarrier(lambda topic: {f"{TOPIC}:0", f"{TOPIC}:1"})
    # partition 0 is ahead: its copy of the truncate (seq 5) and a newer insert (seq 6) arrive first
    first = barrier.admit([change(1, 0, 0), change(5, 0, 1, Op.TRUNCATE), change(6, 0, 2)])
    assert labels(first) == ["c1"]
    assert barrier.blocked == {f"{TOPIC}:0"}
    # partition 1 delivers an older insert (seq 2), then its copy: the truncate comes after seq 2
    # and before seq 6
    second = barrier.admit([change(2, 1, 0), change(5, 1, 1, Op.TRUNCATE), change(7, 1, 2)])
    assert labels(second) == ["c2", f"T{[f'{TOPIC}:0', f'{TOPIC}:1']}", "c6", "c7"]
    assert not barrier.blocked


def test_single_partition_truncate_passes_through() -> None:
    barrier = TruncateBarrier(lambda topic: {f"{TOPIC}:0"})
    assert labels(barrier.admit([change(1, 0, 0), change(2, 0, 1, Op.TRUNCATE)])) == ["c1", "t2"]


def test_batch_for_skips_what_a_sink_holds() -> None:
    items = [change(1, 0, 0), change(2, 0, 1), change(3, 1, 0)]
    batch = _batch_for(items, {f"{TOPIC}:0": 1})  # holds offset 0 of partition 0
    assert batch is not None
    assert [r.position.gtid.seq for r in batch.records] == [2, 3]
    assert dict(batch.state.offsets) == {f"{TOPIC}:0": 2, f"{TOPIC}:1": 1}
    assert _batch_for(items, {f"{TOPIC}:0": 2, f"{TOPIC}:1": 1}) is None
