"""`cdc sink`: the pipeline's Kafka topics into the sinks, offsets stored with the data.

Every sink keeps the offsets it has applied (in the same transaction as the rows); on each partition
assignment the consumer seeks to the lowest offset any sink holds, and each sink is handed only the
messages past its own offsets. No offset is committed to Kafka: a crash at any instant leaves each
sink exactly where its last transaction put it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cdc.core.errors import HeadwaterError
from cdc.core.events import ChangeEvent
from cdc.daemon.supervisor import Supervisor
from cdc.daemon.truncate_barrier import BarrierTruncate, Ready, TruncateBarrier, topic_of
from cdc.stream.kafka_reader import KafkaChangeReader
from sinks.contract import AppliedState, Sink, SinkBatch

log = logging.getLogger("cdc.sink")


@dataclass(frozen=True)
class SinkRunnerOptions:
    until_caught_up: bool = False
    max_events: int = 10_000
    max_ms: int = 500
    idle_flush_seconds: float = 10.0
    assignment_wait_s: float = 30.0  # --until-caught-up with no partition assigned by then: nothing to do
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0


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

    def run(self) -> int:
        return self._supervisor.run(self._run_once)

    def _run_once(self) -> None:
        sinks = list(self._open_sinks())
        reader: KafkaChangeReader | None = None
        try:
            held: dict[str, dict[str, int]] = {}
            for sink in sinks:
                sink.open()
                applied = sink.applied()
                held[sink.name] = dict(applied.offsets) if applied is not None else {}

            def initial_offsets(partitions: list[str]) -> dict[str, int]:
                # the lowest offset any sink holds; a sink that holds none reads from the beginning
                return {p: min(held[s.name].get(p, 0) for s in sinks) for p in partitions}

            reader = self._open_reader(initial_offsets)
            reader.start()
            self._loop(reader, sinks, held)
            for sink in sinks:
                sink.flush()
        finally:
            if reader is not None:
                reader.close()
            for sink in sinks:
                try:
                    sink.close()
                except HeadwaterError as exc:
                    log.warning("closing sink %s: %s", sink.name, exc)

    def _loop(
        self, reader: KafkaChangeReader, sinks: Sequence[Sink], held: dict[str, dict[str, int]]
    ) -> None:
        opts = self._options
        barrier = TruncateBarrier(lambda topic: {p for p in reader.assigned if topic_of(p) == topic})
        pending: list[Ready] = []
        deadline = 0.0
        started = time.monotonic()
        last_flush = time.monotonic()
        dirty = False

        def apply() -> None:
            nonlocal pending, dirty
            if pending:
                for sink in sinks:
                    batch = _batch_for(pending, held[sink.name])
                    if batch is not None:
                        sink.apply(batch)
                        held[sink.name].update(batch.state.offsets)
                self.applied_events += len(pending)
                pending = []
                dirty = True

        while True:
            # never wait past a pending batch's deadline: at low rates that wait is the latency
            wait = min(0.2, max(deadline - time.monotonic(), 0.0)) if pending else 0.2
            changes = reader.poll(opts.max_events, wait)
            if changes:
                ready = barrier.admit(changes)
                if ready and not pending:
                    deadline = time.monotonic() + opts.max_ms / 1000
                pending.extend(ready)
            now = time.monotonic()
            if pending and (len(pending) >= opts.max_events or now >= deadline or self._stop.is_set()):
                apply()
            if not changes:
                if dirty and now - last_flush >= opts.idle_flush_seconds:
                    for sink in sinks:
                        sink.flush()
                    dirty, last_flush = False, now
                if self._stop.is_set():
                    apply()
                    return
                if opts.until_caught_up and not pending:
                    if reader.assigned and reader.assigned <= reader.at_end and not barrier.blocked:
                        # A topic created since the group last balanced is not assigned yet: wait for
                        # the rebalance, unless the assignment has been stable long enough that the
                        # rest must belong to another `cdc sink` process of the group.
                        missing = reader.table_partitions() - reader.assigned
                        stable = now - reader.assignment_changed > opts.assignment_wait_s
                        if not missing or stable:
                            log.info("caught up with the stream: %d changes applied", self.applied_events)
                            return
                    if not reader.assigned and now - started > opts.assignment_wait_s:
                        log.info("no table partitions to consume")
                        return


def _batch_for(items: list[Ready], held: Mapping[str, int]) -> SinkBatch | None:
    """The part of ``items`` a sink does not hold yet, with the offsets it advances."""
    records: list[ChangeEvent] = []
    offsets: dict[str, int] = {}
    for item in items:
        if isinstance(item, BarrierTruncate):
            fresh = {p: o for p, o in item.offsets.items() if o > held.get(p, 0)}
            if fresh:
                records.append(item.event)
                offsets.update(fresh)
            continue
        if item.next_offset > held.get(item.partition, 0):
            records.append(item.event)
            offsets[item.partition] = max(offsets.get(item.partition, 0), item.next_offset)
    if not records:
        return None
    position = max(r.position for r in records)
    return SinkBatch(tuple(records), AppliedState(position, offsets))
