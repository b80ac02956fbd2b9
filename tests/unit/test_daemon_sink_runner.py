"""`cdc sink`'s pure parts: the truncate barrier over partitions, per-sink batches by offset, and what
happens when the group assigns or revokes partitions (offsets read again, gaps, commit before revoke)."""

from __future__ import annotations

import pytest

from cdc.core.errors import StreamGap
from cdc.core.events import ChangeEvent, Op
from cdc.core.positions import Gtid, Position
from cdc.daemon.sink_runner import SinkRunner, SinkRunnerOptions, _batch_for, _Consumption
from cdc.daemon.truncate_barrier import BarrierTruncate, TruncateBarrier
from cdc.stream.kafka_reader import ConsumedChange, Watermarks
from sinks.contract import AppliedState, SinkBatch
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


def test_a_revoked_partition_no_longer_holds_a_truncate_back() -> None:
    assigned = {f"{TOPIC}:0", f"{TOPIC}:1"}
    barrier = TruncateBarrier(lambda topic: set(assigned))
    assert labels(barrier.admit([change(5, 0, 0, Op.TRUNCATE), change(6, 0, 1)])) == []
    # partition 1 goes to another process before its copy came: partition 0 must not wait for it
    released = barrier.forget({f"{TOPIC}:1"})
    assigned.discard(f"{TOPIC}:1")
    assert labels(released) == [f"T{[f'{TOPIC}:0']}", "c6"]
    assert not barrier.blocked
    assert labels(barrier.admit([change(7, 0, 2)])) == ["c7"]


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


class FakeSink:
    def __init__(self, name: str, offsets: dict[str, int] | None) -> None:
        self.name = name
        self.offsets = offsets
        self.flushed = 0

    def applied(self) -> AppliedState | None:
        if self.offsets is None:
            return None
        return AppliedState(Position(Gtid(0, 1, 1), "bin.000001", 100), dict(self.offsets))

    def flush(self) -> None:
        self.flushed += 1


class FakeReader:
    def __init__(self, marks: dict[str, Watermarks]) -> None:
        self.marks = marks
        self.assigned: set[str] = set()

    def watermarks(self, partitions: list[str]) -> dict[str, Watermarks]:
        return {p: self.marks[p] for p in partitions}


def consumption(sinks: list[FakeSink], marks: dict[str, Watermarks]) -> _Consumption:
    runner = SinkRunner(lambda: [], lambda offsets: None, SinkRunnerOptions())  # type: ignore[arg-type,return-value]
    c = _Consumption(runner, sinks)  # type: ignore[arg-type]
    c.reader = FakeReader(marks)  # type: ignore[assignment]
    return c


P0, P1 = f"{TOPIC}:0", f"{TOPIC}:1"


def test_assignment_reads_the_sinks_every_time_and_offsets_only_move_forward() -> None:
    sink = FakeSink("s", {P0: 5})
    c = consumption([sink], {P0: Watermarks(0, 50), P1: Watermarks(0, 50)})
    assert c.assigned([P0]) == {P0: 5}
    sink.offsets = {P0: 30}  # another process of the group applied more meanwhile
    assert c.assigned([P0]) == {P0: 30}
    c.held["s"][P1] = 12  # applied here, not yet read back from the sink
    assert c.assigned([P1]) == {P1: 12}
    sink.offsets = {P0: 3}  # a stale read never takes an offset back
    assert c.assigned([P0]) == {P0: 30}


def test_seek_is_the_lowest_offset_any_sink_holds() -> None:
    c = consumption([FakeSink("a", {P0: 7}), FakeSink("b", {P0: 4})], {P0: Watermarks(0, 9)})
    assert c.assigned([P0]) == {P0: 4}


def test_offsets_below_the_log_start_are_a_gap_naming_sink_partition_and_offsets() -> None:
    c = consumption([FakeSink("sql:a", {P0: 4})], {P0: Watermarks(10, 20)})
    with pytest.raises(StreamGap, match=rf"sql:a needs {P0} from offset 4, but .* starts at offset 10"):
        c.assigned([P0])


def test_a_sink_without_offsets_on_a_trimmed_partition_is_a_gap() -> None:
    c = consumption([FakeSink("a", {P0: 12}), FakeSink("new", None)], {P0: Watermarks(10, 20)})
    with pytest.raises(StreamGap, match=rf"new has never consumed {P0}, which now starts at offset 10"):
        c.assigned([P0])
    # from the start of an untrimmed partition, a new sink simply reads everything
    c = consumption([FakeSink("new", None)], {P0: Watermarks(0, 20)})
    assert c.assigned([P0]) == {P0: 0}


def test_an_offset_past_the_end_means_the_topic_was_recreated() -> None:
    c = consumption([FakeSink("a", {P0: 40})], {P0: Watermarks(0, 3)})
    with pytest.raises(StreamGap, match="deleted and created again"):
        c.assigned([P0])


def test_revoke_applies_what_was_consumed_and_flushes_before_letting_go() -> None:
    sink = FakeSink("s", {})
    applied: list[SinkBatch] = []
    sink.apply = applied.append  # type: ignore[attr-defined]
    c = consumption([sink], {})
    c.pending = [change(1, 0, 0), change(2, 1, 0)]
    c.revoked({P0}, lost=False)
    assert [len(b.records) for b in applied] == [2] and sink.flushed == 1 and not c.pending
    c.pending = [change(3, 0, 1), change(4, 1, 1)]
    c.revoked({P0}, lost=True)  # already another member's: not applied here
    assert [item.partition for item in c.pending] == [P1]  # type: ignore[union-attr]
