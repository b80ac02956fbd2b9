"""`cdc sink`'s pure parts: truncate copies passed on unheld, per-sink batches by offset, and what
happens when the group assigns or revokes partitions (offsets read again, gaps, commit before revoke)."""

from __future__ import annotations

import pytest

from cdc.core.errors import StreamGap
from cdc.core.events import ChangeEvent, Op
from cdc.core.positions import Gtid, Position
from cdc.core.schemas import TableSchema
from cdc.daemon.sink_runner import SinkRunner, SinkRunnerOptions, _batch_for, _Consumption
from cdc.stream.kafka_chunks import ChangeChunk
from cdc.stream.kafka_reader import Watermarks
from sinks.contract import AppliedState, SinkBatch
from tests.unit.test_daemon_capture import SCHEMA

TOPIC = "p.db.t"


class Decoded:
    """A chunk decoder that hands back prebuilt events (the message value is the event's index)."""

    def __init__(self) -> None:
        self.made: list[ChangeEvent] = []

    def events(self, values: object) -> list[ChangeEvent]:
        return [self.made[int(v)] for v in values]  # type: ignore[attr-defined]

    def table_schema(self, version: str) -> TableSchema:
        return SCHEMA


DECODED = Decoded()


def change(seq: int, partition: int, offset: int, op: Op = Op.CREATE) -> ChangeChunk:
    """A one-message chunk (the reader's chunks hold a poll's messages of one partition)."""
    pos = Position(Gtid(0, 1, seq), "bin.000001", 100 * seq)
    key = None if op is Op.TRUNCATE else (seq,)
    after = None if op is Op.TRUNCATE else (seq,)
    DECODED.made.append(ChangeEvent(op, SCHEMA, key, None, after, pos, 0, str(pos.gtid)))
    value = str(len(DECODED.made) - 1).encode()
    return ChangeChunk(f"{TOPIC}:{partition}", [value], [offset + 1], DECODED)


def test_truncate_copies_go_to_the_sinks_like_any_message() -> None:
    """No barrier: each partition's copy of a truncate is handed on at once, with its offset (the
    sinks fence truncates by position), so no partition waits for another's copy."""
    # partition 0 is ahead (its copy at seq 5 and a newer insert); partition 1 is behind
    items = [change(1, 0, 0), change(5, 0, 1, Op.TRUNCATE), change(6, 0, 2), change(2, 1, 0)]
    batch = _batch_for(items, {}, False)
    assert batch is not None
    seen = [f"{r.op.value}{r.position.gtid.seq}" for r in batch.records if isinstance(r, ChangeEvent)]
    assert seen == ["c1", "t5", "c6", "c2"]
    assert dict(batch.state.offsets) == {f"{TOPIC}:0": 3, f"{TOPIC}:1": 1}


def test_batch_for_skips_what_a_sink_holds() -> None:
    items = [change(1, 0, 0), change(2, 0, 1), change(3, 1, 0)]
    batch = _batch_for(items, {f"{TOPIC}:0": 1}, False)  # holds offset 0 of partition 0
    assert batch is not None
    assert [r.position.gtid.seq for r in batch.records] == [2, 3]
    assert dict(batch.state.offsets) == {f"{TOPIC}:0": 2, f"{TOPIC}:1": 1}
    assert _batch_for(items, {f"{TOPIC}:0": 2, f"{TOPIC}:1": 1}, False) is None


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
    c.pending_changes = 2
    c.revoked({P0}, lost=False)
    assert [len(b.records) for b in applied] == [2] and sink.flushed == 1 and not c.pending
    c.pending = [change(3, 0, 1), change(4, 1, 1)]
    c.pending_changes = 2
    c.revoked({P0}, lost=True)  # already another member's: not applied here
    assert [item.partition for item in c.pending] == [P1]
