"""The capture loop's rules, on an in-memory source and writer (the real ones have integration tests).

- a Kafka transaction is committed only at a source transaction's end, with that end as checkpoint;
- a transient failure aborts the open transaction and resumes from the last checkpoint: in the
  committed output every row appears exactly once;
- no checkpoint yet: the source's current position is committed before anything is read;
- a stop request finishes the source transaction in progress, commits, and exits 0;
- SourceProgress (heartbeats, other tables' transactions) moves the checkpoint: on the next data
  commit, or alone in a checkpoint-only commit at most once per idle_checkpoint_s.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from cdc.core.errors import SourceUnavailable, TerminalError
from cdc.core.events import ChangeEvent, Op, SourceProgress, SourceRecord, TransactionEnd
from cdc.core.positions import Gtid, Position, RestartPoint
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from cdc.daemon.capture import CaptureDaemon, CaptureOptions
from cdc.daemon.pump import CHUNK_RECORDS

SCHEMA = TableSchema.build(
    TableRef("db", "t"), (Column("id", "int", ArrowType(ArrowKind.INT32), False),), ("id",)
)
BOUNDARY = RestartPoint(Position(Gtid(0, 1, 0), "bin.000001", 4, 0), 0)


def transactions(count: int, rows: int) -> list[list[SourceRecord]]:
    out: list[list[SourceRecord]] = []
    for t in range(count):
        start = Position(Gtid(0, 1, t + 1), "bin.000001", 100 + t * 1000, 0)
        tx: list[SourceRecord] = []
        for r in range(rows):
            pos = start.at_row(r)
            tx.append(
                ChangeEvent(
                    Op.CREATE, SCHEMA, (t * rows + r,), None, (t * rows + r,), pos, 0, str(start.gtid)
                )
            )
        tx.append(TransactionEnd(str(start.gtid), start.at_row(rows - 1), rows, 0))
        out.append(tx)
    return out


@dataclass
class Broker:
    """What a read_committed consumer would see, and the checkpoint topic."""

    committed: list[SourceRecord] = field(default_factory=list)
    checkpoint: RestartPoint | None = None
    aborts: int = 0


class FakeWriter:
    def __init__(self, broker: Broker, fail_after_writes: int | None = None) -> None:
        self.broker = broker
        self.pending: list[SourceRecord] | None = None
        self.fail_after = fail_after_writes

    def start(self) -> RestartPoint | None:
        return self.broker.checkpoint

    def begin(self) -> None:
        assert self.pending is None, "begin inside an open transaction"
        self.pending = []

    def write(self, record: SourceRecord) -> None:
        assert self.pending is not None, "write outside a transaction"
        if self.fail_after is not None:
            if self.fail_after == 0:
                raise SourceUnavailable("broker went away")
            self.fail_after -= 1
        self.pending.append(record)

    def commit(self, checkpoint: RestartPoint) -> None:
        assert self.pending is not None
        if self.pending:
            last = self.pending[-1]
            assert isinstance(last, TransactionEnd), "committed in the middle of a source transaction"
            # the transaction's end, or a later boundary a SourceProgress vouched for
            assert last.restart == checkpoint or checkpoint.transaction > last.restart.transaction
        self.broker.committed.extend(self.pending)
        self.broker.checkpoint = checkpoint
        self.pending = None

    def abort(self) -> None:
        if self.pending is not None:
            self.broker.aborts += 1
        self.pending = None

    def close(self) -> None:
        pass


class FakeSource:
    def __init__(self, txs: list[list[SourceRecord]], gate: threading.Event | None = None) -> None:
        self.flat = [r for tx in txs for r in tx]
        self.gate = gate
        self.starts: list[RestartPoint] = []

    def current_restart_point(self) -> RestartPoint:
        return BOUNDARY

    def tables(self) -> tuple[str, ...]:
        return ("db.t",)

    def records(self, start: RestartPoint) -> Iterator[SourceRecord]:
        self.starts.append(start)
        skip = start.skip_rows
        started = start == BOUNDARY
        for record in self.flat:
            pos = record.position if isinstance(record, ChangeEvent) else None
            if not started:
                if pos is not None and pos.at_row(0) == start.transaction:
                    started = True
                else:
                    continue
            if isinstance(record, ChangeEvent) and skip:
                skip -= 1
                continue
            if self.gate is not None and isinstance(record, TransactionEnd):
                yield record
                self.gate.wait(5)
                continue
            yield record

    def close(self) -> None:
        pass


def keys(records: list[SourceRecord]) -> list[int]:
    return [int(r.key[0]) for r in records if isinstance(r, ChangeEvent) and r.key]  # type: ignore[arg-type]


def test_commits_only_at_transaction_ends_and_catches_up() -> None:
    broker = Broker()
    source = FakeSource(transactions(5, 3))
    daemon = CaptureDaemon(lambda: FakeWriter(broker), lambda: source, CaptureOptions(flush_max_events=4))
    assert daemon.run() == 0
    assert keys(broker.committed) == list(range(15))
    assert broker.checkpoint == transactions(5, 3)[-1][-1].restart  # type: ignore[union-attr]
    assert source.starts == [BOUNDARY]


def test_transient_failure_resumes_from_checkpoint_without_duplicates() -> None:
    broker = Broker()
    txs = transactions(6, 4)
    attempts = iter(
        [
            FakeWriter(broker, fail_after_writes=13),
            FakeWriter(broker, fail_after_writes=9),
            FakeWriter(broker),
        ]
    )
    source = FakeSource(txs)
    options = CaptureOptions(flush_max_events=5, backoff_initial_s=0.01)
    assert CaptureDaemon(lambda: next(attempts), lambda: source, options).run() == 0
    assert keys(broker.committed) == list(range(24))
    assert broker.aborts == 2
    assert len(source.starts) == 3 and source.starts[1] != BOUNDARY


def test_terminal_error_exits_2() -> None:
    class Broken(FakeSource):
        def records(self, start: RestartPoint) -> Iterator[SourceRecord]:
            raise TerminalError("binlog purged")
            yield  # pragma: no cover

    daemon = CaptureDaemon(lambda: FakeWriter(Broker()), lambda: Broken([]), CaptureOptions())
    assert daemon.run() == 2


def test_stop_finishes_the_open_transaction() -> None:
    broker = Broker()
    gate = threading.Event()
    source = FakeSource(transactions(3, 2), gate=gate)
    daemon = CaptureDaemon(
        lambda: FakeWriter(broker), lambda: source, CaptureOptions(flush_max_events=1000, flush_max_ms=60_000)
    )
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(daemon._run_once() or 0))
    thread.start()
    daemon._stop.set()  # as SIGTERM does, while the first transaction is being read
    gate.set()
    thread.join(10)
    assert result == [0]
    committed = keys(broker.committed)
    assert committed and len(committed) % 2 == 0  # whole transactions only
    assert broker.checkpoint is not None


class SlowMidTransactionSource(FakeSource):
    """Stalls in the middle of each transaction (after the reader has handed over its first chunk),
    longer than the flush interval."""

    def records(self, start: RestartPoint) -> Iterator[SourceRecord]:
        import time

        for record in super().records(start):
            # the first transaction ends before the flush is due; the second stalls half written
            # (past its first chunk) until the flush deadline has passed
            pos = record.position if isinstance(record, ChangeEvent) else None
            if pos is not None and pos.gtid.seq == 2 and pos.row == CHUNK_RECORDS + 100:
                time.sleep(0.3)
            yield record


def test_the_flush_timer_never_commits_inside_a_source_transaction() -> None:
    broker = Broker()
    source = SlowMidTransactionSource(transactions(3, 2 * CHUNK_RECORDS))
    daemon = CaptureDaemon(lambda: FakeWriter(broker), lambda: source, CaptureOptions(flush_max_ms=100))
    assert daemon.run() == 0  # FakeWriter.commit asserts the Kafka transaction ends at a TransactionEnd
    assert keys(broker.committed) == list(range(3 * 2 * CHUNK_RECORDS))


def progress(seq: int) -> SourceProgress:
    return SourceProgress(RestartPoint(Position(Gtid(0, 1, seq), "bin.000002", 1000 + seq, 0), 0), 0)


def test_progress_alone_is_committed_as_a_checkpoint() -> None:
    broker = Broker()
    idle = [progress(100 + i) for i in range(3)]
    source = FakeSource([*transactions(1, 2), idle])
    daemon = CaptureDaemon(lambda: FakeWriter(broker), lambda: source, CaptureOptions())
    assert daemon.run() == 0
    assert keys(broker.committed) == [0, 1]  # no change written for the idle stretch
    assert broker.checkpoint == idle[-1].restart


def test_progress_after_a_transaction_rides_on_its_commit() -> None:
    broker = Broker()
    [tx] = transactions(1, 2)
    source = FakeSource([[*tx, progress(100)]])
    options = CaptureOptions(flush_max_ms=60_000, idle_checkpoint_s=60)
    daemon = CaptureDaemon(lambda: FakeWriter(broker), lambda: source, options)
    assert daemon.run() == 0
    assert broker.checkpoint == progress(100).restart
    assert daemon.stats.idle_checkpoints == 0  # one commit: the data and the further checkpoint
    assert daemon.stats.commits == 1


def test_idle_checkpoints_are_rate_limited_and_the_last_one_is_committed() -> None:
    broker = Broker()
    idle = [progress(100 + i) for i in range(2_000)]
    source = FakeSource([idle])
    daemon = CaptureDaemon(lambda: FakeWriter(broker), lambda: source, CaptureOptions(idle_checkpoint_s=60))
    assert daemon.run() == 0
    # the first at once, the rest held back by the interval until the stream's end commits the last
    assert daemon.stats.idle_checkpoints == 2
    assert broker.checkpoint == idle[-1].restart
