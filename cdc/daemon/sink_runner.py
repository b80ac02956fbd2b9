"""`cdc sink`: the pipeline's Kafka topics into the sinks, offsets stored with the data.

Every sink keeps the offsets it has applied (in the same transaction as the rows); on each partition
assignment the sinks are asked again what they hold for the new partitions (another process of the
group may have advanced them), the consumer seeks to the lowest, and each sink is handed only the
messages past its own offsets. Before a partition goes to another process, what was consumed from
it is applied and flushed. No offset is committed to Kafka: a crash at any instant leaves each sink
exactly where its last transaction put it.

A batch is applied on the run's sink thread (:mod:`cdc.daemon.sink_thread`) while this thread polls
and decodes the next one: one batch in flight, applied in consumption order, and every other call
into the sinks (``applied`` on an assignment, ``flush`` before a revoke or when idle, ``close``) made
on that thread after it. A failed apply stops the run with its error before anything later reaches
a sink.

A sink that needs messages the topic no longer holds (retention deleted them, or the sink was added
after they were) stops the run with StreamGap naming the sink, the partition and both offsets,
instead of silently starting from what is left. `cdc sink --accept-gap` is the operator's explicit
way past it (after resetting the sink, or accepting what it misses): those sinks start from what each
partition holds now, and every partition skipped is logged.

A TRUNCATE reaches every partition of its table's topic; each copy is handed to the sinks like any
message. The sinks fence truncates by position (see :mod:`sinks.contract`): the first copy empties
the table, the others change nothing, and rows older than it arriving later from other partitions
are skipped. So nothing here waits for the other partitions' copies, whichever partitions this
process holds, and `--until-caught-up` depends only on the offsets.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from operator import attrgetter

import pyarrow.compute as pc

from cdc.core.errors import HeadwaterError, StreamGap
from cdc.core.positions import Position
from cdc.daemon.gc_settings import fewer_collections
from cdc.daemon.gc_timing import log_collections
from cdc.daemon.heap_trim import trim_after_batch
from cdc.daemon.memory_settings import use_lean_allocators
from cdc.daemon.metrics import DaemonMetrics, Phase, tally
from cdc.daemon.sink_thread import SinkThread
from cdc.daemon.supervisor import Supervisor
from cdc.stream.kafka_chunks import ChangeChunk, ChunkRecords
from cdc.stream.kafka_reader import GAP_RECOVERY, KafkaChangeReader, Watermarks
from sinks.contract import AppliedState, Sink, SinkBatch
from sinks.table_selection import unwrap

log = logging.getLogger("cdc.sink")
# One DEBUG line per batch: when its first change was polled, handed to the sink thread, taken up by
# it and committed (wall clock, so `benchmarks.e2e` lines them up with its own probes). On with
# HEADWATER_SINK_TIMING=1 whatever --log-level says (DEBUG for everything would log every SQL statement).
timing_log = logging.getLogger("cdc.sink.timing")
if os.environ.get("HEADWATER_SINK_TIMING"):
    timing_log.setLevel(logging.DEBUG)

# a ready batch waiting for the sink thread: how often what arrives meanwhile is taken and decoded
_READY_WAIT_S = 0.02


_SOURCE_TS = attrgetter("source_ts_ms")
# os.sched_yield releases the GIL around the call (CPython's posixmodule); not on every platform
_yield_cpu: Callable[[], None] = getattr(os, "sched_yield", lambda: None)


@dataclass(frozen=True)
class SinkRunnerOptions:
    until_caught_up: bool = False
    max_events: int = 10_000
    max_ms: int = 500
    idle_flush_seconds: float = 10.0
    assignment_wait_s: float = 30.0  # --until-caught-up with no partition assigned by then: nothing to do
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    # `cdc sink --accept-gap`: a sink that needs messages the topic no longer holds starts from what
    # the partition holds now, with a WARNING naming what it skips, instead of stopping (StreamGap)
    accept_gap: bool = False


OpenReader = Callable[[Callable[[list[str]], Mapping[str, int]]], KafkaChangeReader]


class SinkRunner:
    def __init__(
        self, open_sinks: Callable[[], Sequence[Sink]], open_reader: OpenReader, options: SinkRunnerOptions
    ) -> None:
        self._open_sinks = open_sinks
        self._open_reader = open_reader
        self._options = options
        self._supervisor = Supervisor(options.backoff_initial_s, options.backoff_max_s)
        self._stop = self._supervisor.stop_requested
        self.applied_events = 0
        self.metrics: DaemonMetrics | None = None  # set by the CLI when `metrics` is configured

    def run(self) -> int:
        use_lean_allocators()
        if timing_log.isEnabledFor(logging.DEBUG):
            log_collections(timing_log)
        metrics = self.metrics
        return self._supervisor.run(metrics.attempt(self._run_once) if metrics else self._run_once)

    def _run_once(self) -> None:
        sinks = list(self._open_sinks())
        thread = SinkThread()
        reader: KafkaChangeReader | None = None
        consumption: _Consumption | None = None
        abandon = False
        try:
            for sink in sinks:
                thread.call(sink.open)
            consumption = _Consumption(self, sinks, thread)
            reader = self._open_reader(consumption.assigned)
            consumption.reader = reader
            reader.on_revoke = consumption.revoked
            # 16 MiB queued instead of 2 when every sink's memory floor is far above it (Iceberg)
            reader.start(large_prefetch=all(getattr(unwrap(s), "large_prefetch", False) for s in sinks))
            with fewer_collections():
                consumption.run()
            for sink in sinks:
                thread.call(sink.flush)
        except KeyboardInterrupt:
            # a second signal: stop now. A batch still being applied is left to the process's end
            # (its transaction commits or not; the sinks' offsets say which at the next start)
            abandon = thread.busy
            raise
        finally:
            if consumption is not None:
                consumption.active = False  # closing the consumer revokes everything: nothing to do
            if not abandon:
                # before the consumer leaves the group: another member must not read the sinks'
                # offsets while this process may still commit a batch
                thread.settle()
                if reader is not None:
                    reader.close()
                for sink in sinks:
                    try:
                        thread.call(sink.close)
                    except HeadwaterError as exc:
                        log.warning("closing sink %s: %s", sink.name, exc)
            thread.close()


class _Consumption:
    """One run's consume-and-apply loop, and what it does when the group moves partitions.

    ``held[sink][partition]`` is the next offset each sink needs. It is read from the sink
    (``applied()``) whenever a partition is assigned, since another process of the group may have
    advanced it meanwhile, and it only moves forward. Before a partition is revoked, whatever was
    consumed is applied and every sink flushed, so the next owner starts exactly where this one
    stopped (a buffering sink would otherwise commit rows the next owner applies too).
    """

    def __init__(self, runner: SinkRunner, sinks: Sequence[Sink], thread: SinkThread | None = None) -> None:
        self.runner = runner
        self.sinks = sinks
        self.thread = thread if thread is not None else SinkThread()
        self.reader: KafkaChangeReader | None = None
        self.held: dict[str, dict[str, int]] = {sink.name: {} for sink in sinks}
        self.pending: list[ChangeChunk] = []
        self.pending_changes = 0
        # the pending batch's polls: (changes, wall clock when polled), for the timing lines
        self.polls: list[tuple[int, float]] = []
        self.dirty = False
        self.active = True
        # a sink that reads a batch's chunks as Arrow columns (the Iceberg history): the batch's
        # position is then read from the columns too, so no chunk is decoded change by change
        self.columnar = any(getattr(unwrap(sink), "takes_change_columns", False) for sink in sinks)

    # -- the group's callbacks (on the polling thread, inside reader.poll) -----------------------

    def assigned(self, partitions: list[str]) -> dict[str, int]:
        """Offsets to start the newly assigned ``partitions`` at; StreamGap if a sink would skip."""
        assert self.reader is not None
        if not partitions:
            return {}
        stored = {}
        for sink in self.sinks:
            applied = self.thread.call(sink.applied)  # after the batch in flight, if any
            stored[sink.name] = applied.offsets if applied is not None else {}
        bounds = self.reader.watermarks(partitions)
        gaps: list[str] = []
        seek: dict[str, int] = {}
        accept = self.runner._options.accept_gap
        for partition in partitions:
            marks = bounds[partition]
            for sink in self.sinks:
                held = self.held[sink.name]
                known = [o for o in (stored[sink.name].get(partition), held.get(partition)) if o is not None]
                gap: str | None = None
                if not known:
                    if marks.low > 0:
                        gap = _never_consumed(sink.name, partition, marks)
                else:
                    offset = held[partition] = max(known)
                    if offset < marks.low:
                        gap = _deleted(sink.name, partition, offset, marks)
                    elif offset > marks.high:
                        gap = _recreated(sink.name, partition, offset, marks)
                if gap is not None:
                    gaps.append(gap)
                    if accept:
                        held[partition] = marks.low  # from what the partition holds now
            seek[partition] = min(self.held[s.name].get(partition, 0) for s in self.sinks)
        if gaps and accept:
            for gap in gaps:
                log.warning("--accept-gap: %s; it starts from the partition's current start instead", gap)
        elif gaps:
            raise StreamGap(_gap_message(gaps))
        return seek

    def revoked(self, partitions: set[str], lost: bool) -> None:
        if not self.active:
            return
        # the batch in flight was consumed before this callback: it lands first either way, as it
        # did when it was applied on this thread before the poll that brought the callback
        self.thread.wait()
        if lost:
            # Another member owns them already (this process stalled past session.timeout.ms):
            # what it consumed from them and did not apply must not land; the new owner applies
            # it. What a buffering sink already took is committed by its next flush, as the new
            # owner reads the sinks' offsets before that: this rare case can duplicate.
            self.pending = [item for item in self.pending if item.partition not in partitions]
            self.pending_changes = sum(len(item) for item in self.pending)
            self.polls = [(self.pending_changes, self.polls[0][1])] if self.pending and self.polls else []
            for held in self.held.values():
                for partition in partitions:
                    held.pop(partition, None)
            log.warning("lost %d partitions to the group (missed the session timeout)", len(partitions))
            return
        self.apply()
        for sink in self.sinks:
            self.thread.call(sink.flush)
        self.dirty = False

    # -- the loop ----------------------------------------------------------------------------

    def apply(self) -> None:
        """Hand the pending batch to the sink thread (after the one in flight); returns at once."""
        pending = self.pending
        if not pending:
            return
        # Each sink's part is cut here, by the offsets it will hold once the batch in flight has
        # landed (if that one fails, the run ends and the next reads them from the sinks again).
        batches: list[tuple[Sink, SinkBatch]] = []
        for sink in self.sinks:
            held = self.held[sink.name]
            batch = _batch_for(pending, held, self.columnar)
            if batch is not None:
                batches.append((sink, batch))
                held.update(batch.state.offsets)
        polls = self.polls
        handed = time.time()
        self.thread.start(partial(self._apply, batches, pending, self.pending_changes, (polls, handed)))
        # The sink thread can take the batch up now: give it the CPU and the GIL (sched_yield lets go
        # of both). Else, on a busy or pinned core, it waited until this thread's time slice or a
        # forced GIL switch ran out (started - done 12-17 ms median at load 9-19, 0.4-0.8 s of a
        # 200k-change run into PostgreSQL; 1-5 ms with the yield: benchmarks/results, pollthread).
        _yield_cpu()
        self.pending = []
        self.pending_changes = 0
        self.polls = []
        self.dirty = True

    def _apply(
        self,
        batches: list[tuple[Sink, SinkBatch]],
        chunks: list[ChangeChunk],
        changes: int,
        times: tuple[list[tuple[int, float]], float],
    ) -> None:
        """On the sink thread: the batch into each sink, in order, each committing its offsets."""
        started = time.time()
        for sink, batch in batches:
            sink.apply(batch)
        committed = time.time()
        self.runner.applied_events += changes
        metrics = self.runner.metrics
        if metrics is not None:
            counts: Counter[tuple[str, str, str]] = Counter()
            metrics.committed(counts, 0, max(_tally(chunk, counts) for chunk in chunks))
        # what the batch freed goes back to the system when the process is near its peak RSS
        # (cdc/daemon/heap_trim.py; a trim after every batch was ~25% of the CPU in small batches)
        trim_after_batch()
        if timing_log.isEnabledFor(logging.DEBUG):
            polls, handed = times
            timing_log.debug(
                "batch changes=%d polled=%.6f handed=%.6f started=%.6f committed=%.6f done=%.6f polls=%s",
                changes, polls[0][1] if polls else handed, handed, started, committed, time.time(),
                ",".join(f"{n}@{at:.6f}" for n, at in polls),
            )  # fmt: skip

    def run(self) -> None:
        self._loop()
        self.thread.wait()  # the last batch has landed (or its error is raised here)

    def _loop(self) -> None:
        reader = self.reader
        assert reader is not None
        opts = self.runner._options
        stop = self.runner._stop
        deadline = 0.0
        started = time.monotonic()
        last_flush = time.monotonic()
        metrics = self.runner.metrics
        if metrics is not None:
            metrics.phase = Phase.RUNNING
        # two batches are held ahead of the sinks (one applied, one filled): each at most half of
        # max_events, so that the pipeline holds what one batch did (PostgreSQL peak RSS, 200k
        # changes: 229-239 MiB with whole batches, 206-208 with halves, 202-207 before the pipeline)
        limit = max(opts.max_events // 2, 1)

        while True:
            if metrics is not None:
                metrics.tick = time.monotonic()
            self.thread.check()  # a failed apply stops the run now, not after the next batch
            # never wait past a pending batch's deadline: at low rates that wait is the latency
            wait = min(0.2, max(deadline - time.monotonic(), 0.0)) if self.pending else 0.2
            if self.pending and not reader.backlog:
                # A batch is ready: it goes once the sink thread is free, with what arrived meanwhile,
                # taken in polls at most _READY_WAIT_S apart (decoded while the thread works). Polling
                # every 2 ms made a chunk of every trickle (at 10k changes/s, chunks of ~20 changes),
                # and the per-chunk work (a decode, a schema check and an Arrow table to concatenate
                # each) cost more than the changes: e2e at 10k/s, sink half p50 148-173 ms against
                # 78-136 without the sink thread.
                self.thread.idle(min(wait, _READY_WAIT_S))
                wait = 0.0
            elif (
                opts.until_caught_up
                and not self.pending
                and self.thread.busy
                and reader.assigned <= reader.at_end
            ):
                # Everything consumed is handed over and every partition's end is marked: the run
                # can end once the sink thread is done, so that is what to wait for (a poll waited
                # out its 0.2 s while the last batch was applied). What arrives meanwhile is next.
                self.thread.idle(wait)
                wait = 0.0
            # at most max_events pending: a second poll into a batch asks only for the rest (it
            # asked for max_events again, and batches of 17k changes raised the peak RSS)
            room = max(limit - self.pending_changes, 1)
            changes = reader.poll_chunks(room, wait)
            if changes:
                polled_at = time.time()
                if not self.pending:
                    deadline = time.monotonic() + opts.max_ms / 1000
                # decoded now, while the sink thread applies the batch before (columns for a run
                # whose sinks take them; those the columns cannot carry are decoded when batched)
                for chunk in changes:
                    if self.columnar:
                        chunk.columns()
                    else:
                        chunk.decode_now()
                self.pending.extend(changes)
                polled = sum(len(chunk) for chunk in changes)
                self.pending_changes += polled
                self.polls.append((polled, polled_at))
            now = time.monotonic()
            # Apply once nothing more is waiting and the sink thread is free (a batch then holds
            # whatever arrived while the last one was applied: large when busy, small and prompt
            # when not), or at the batch's limits (then after the batch in flight).
            if self.pending and (
                (not reader.backlog and not self.thread.busy)
                or self.pending_changes >= limit
                or now >= deadline
                or stop.is_set()
            ):
                self.apply()
            if not changes:
                if self.dirty and now - last_flush >= opts.idle_flush_seconds:
                    for sink in self.sinks:
                        self.thread.call(sink.flush)
                    self.dirty, last_flush = False, now
                    if metrics is not None:
                        metrics.flushed()
                if stop.is_set():
                    self.apply()
                    return
                if opts.until_caught_up and not self.pending and not self.thread.busy:
                    if reader.assigned and reader.assigned <= reader.at_end:
                        # A topic created since the group last balanced is not assigned yet: wait for
                        # the rebalance, unless the assignment has been stable long enough that the
                        # rest must belong to another `cdc sink` process of the group.
                        missing = reader.table_partitions() - reader.assigned
                        stable = now - reader.assignment_changed > opts.assignment_wait_s
                        if not missing or stable:
                            self.thread.wait()
                            log.info(
                                "caught up with the stream: %d changes applied", self.runner.applied_events
                            )
                            return
                    if not reader.assigned and now - started > opts.assignment_wait_s:
                        log.info("no table partitions to consume")
                        return


def _tally(chunk: ChangeChunk, counts: Counter[tuple[str, str, str]]) -> int:
    """Count the chunk's changes by (db, table, op) into ``counts``; its latest source time. From
    its columns when a sink decoded them (no ChangeEvent made for the metrics), else its events."""
    columns = chunk.decoded_columns()
    if columns is None:
        events = chunk.events()
        tally(events, counts)
        return int(max(map(_SOURCE_TS, events)))
    ref = columns.schema.ref
    for item in pc.value_counts(columns.op).to_pylist():
        counts[(ref.db, ref.table, str(item["values"]))] += int(item["counts"])
    return int(pc.max(columns.source_ts_ms).as_py())


def _never_consumed(sink: str, partition: str, marks: Watermarks) -> str:
    return (
        f"sink {sink} has never consumed {partition}, which now starts at offset {marks.low}: "
        f"the {marks.low} messages before it were deleted (retention) and the sink would miss them"
    )


def _deleted(sink: str, partition: str, offset: int, marks: Watermarks) -> str:
    return (
        f"sink {sink} needs {partition} from offset {offset}, but the partition now starts at "
        f"offset {marks.low}: messages {offset}..{marks.low - 1} were deleted (retention) before "
        "the sink applied them"
    )


def _recreated(sink: str, partition: str, offset: int, marks: Watermarks) -> str:
    return (
        f"sink {sink} needs {partition} from offset {offset}, but the partition ends at offset "
        f"{marks.high}: the topic was deleted and created again since the sink read it"
    )


def _gap_message(gaps: list[str]) -> str:
    shown = "; ".join(gaps[:5]) + (f"; and {len(gaps) - 5} more" if len(gaps) > 5 else "")
    return f"the stream has a gap for this sink: {shown}. {GAP_RECOVERY}"


def _batch_for(chunks: list[ChangeChunk], held: Mapping[str, int], columnar: bool) -> SinkBatch | None:
    """The part of ``chunks`` a sink does not hold yet, with the offsets it advances."""
    parts: list[ChangeChunk] = []
    offsets: dict[str, int] = {}
    for chunk in chunks:
        part = chunk.after(held.get(chunk.partition, 0))
        if part is None:
            continue
        parts.append(part)
        if part.next_offsets[-1] > offsets.get(part.partition, 0):
            offsets[part.partition] = part.next_offsets[-1]
    if not parts:
        return None
    position = max((part.last_position(columnar) for part in parts), key=_position_key)
    return SinkBatch(ChunkRecords(parts), AppliedState(position, offsets))


def _position_key(position: Position) -> tuple[object, ...]:
    return position._key
