"""`cdc run` with a stream: the binlog, read on its own thread, into Kafka transactions, exactly once.

The loop fits on a screen (Maxwell's ``work``): take a chunk of records, write each into the open
Kafka transaction, and commit, with the checkpoint, only at a source transaction's end, once enough
events or milliseconds have gone by. A failure aborts the open Kafka transaction and starts over from
the last committed checkpoint, so nothing is lost and nothing is written twice.

The checkpoint also moves while the captured tables are idle: the source sends SourceProgress on
heartbeats and after other tables' transactions. Between source transactions, its restart point
becomes the next commit's checkpoint; with nothing else to write, it is committed in a
checkpoint-only Kafka transaction, at most once per ``idle_checkpoint_s`` (1 s) and the latest one
within that interval, so `cdc status` shows no lag once caught up, and a restart never needs binlog
that only held other tables' changes.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Protocol

from cdc.config.models import BootstrapMode
from cdc.core.errors import HeadwaterError, SourceUnavailable
from cdc.core.events import ChangeEvent, SnapshotProgress, SourceProgress, SourceRecord, TransactionEnd
from cdc.core.handover import Chunk, EndOfStream
from cdc.core.positions import RestartPoint
from cdc.daemon.gc_settings import CAPTURE_YOUNG_THRESHOLD, fewer_collections
from cdc.daemon.gc_timing import log_collections
from cdc.daemon.metrics import DaemonMetrics, Phase, tally_chunk
from cdc.daemon.pump import ReaderPump
from cdc.daemon.supervisor import Supervisor
from cdc.policy.pump import with_policies

if TYPE_CHECKING:
    from cdc.daemon.snapshots import Snapshots
    from cdc.policy import ColumnPolicies

log = logging.getLogger("cdc.run")
# One DEBUG line per Kafka commit: when its transaction began, when the commit was called and when it
# returned, with why it was made (wall clock, so `benchmarks.e2e` can split the capture half of the
# latency into waiting for the commit, the commit, and the fetch). On with HEADWATER_CAPTURE_TIMING=1.
timing_log = logging.getLogger("cdc.run.timing")
if os.environ.get("HEADWATER_CAPTURE_TIMING"):
    timing_log.setLevel(logging.DEBUG)

# The shortest time between two commits made because the writer has written everything handed over
# (the reading thread is behind, or changes trickle in) though more input waits. Waiting for the
# source to be quiet instead held such changes until flush_max_ms (200 ms): the capture half of the
# end-to-end p99 was ~110 ms at 10k changes/s. A commit costs the writer ~2-3 ms of waiting (while
# the reading thread goes on) and ~0.2 ms of CPU, so at most ~40 a second cost throughput little;
# while the writer is the slower thread, chunks queue up and it never gets here (flush_max_* rule).
COMMIT_GAP_S = 0.025


# The shortest time between a commit and the next one made because the source is quiet (nothing
# more waiting). Each Kafka commit costs the broker ~2.5 ms of CPU whatever its size
# (AddPartitionsToTxn, EndTxn, the markers; a private broker at 10k messages/s: 0.10-0.11 cores at 25
# commits/s, 0.36-0.45 at 150/s). At 10k changes/s written as 100 small transactions a second,
# committing at every quiet moment made ~150 commits/s on a quiet machine, 50-85 under load. With
# this gap, alternated e2e runs at load 10-17 (benchmarks/results: e2etail): commits/s 75 -> 56,
# broker CPU 27.9 -> 23.1 us per change, p50 58 -> 41 ms, p99 198 -> 177 ms (medians of 5). 25 ms
# halved the commits and the p50 but not the p99 (357 against 355 ms, 17 pairs at load 8-19; 323 in
# the 5 runs above). A change that comes within the gap waits for it in the open transaction.
# HEADWATER_QUIET_GAP_MS (milliseconds) replaces it, to A/B the commit cadence with both arms run from
# one tree (benchmarks.e2e passes the environment on); not a setting. At 10k changes/s each Kafka
# commit costs the pipeline ~9 ms of CPU (the broker ~3.5, `cdc sink`'s batch ~3, `cdc run` ~1.7, the
# sink's PostgreSQL transaction ~0.7: benchmarks/results, hop2). 25 ms against 12, private broker, 4
# pairs at load 13-16: 27 against 47 commits/s, CPU-us per change broker 16.8 vs 24.2, cdc run 12.9 vs
# 15.8, cdc sink 14.0 vs 18.8, PostgreSQL 4.8 vs 5.8 (lower in every pair), but the e2e p50 78 against
# 63 ms (higher in 3 of 4) and the p99 (228-3,768 ms) not comparable at that load: 12 ms stays.
def _quiet_gap_s(default: float) -> float:
    try:
        return max(float(os.environ["HEADWATER_QUIET_GAP_MS"]) / 1000, 0.0)
    except (KeyError, ValueError):
        return default


QUIET_GAP_S = _quiet_gap_s(0.012)


class StreamWriter(Protocol):
    # A writer may also have ``write_changes(records, start) -> int`` (KafkaStreamWriter: a run of
    # changes in one call); the loop falls back to ``write`` per change without it.
    # the snapshotter's state as of the last commit (SnapshotProgress records written into a
    # transaction are stored with its checkpoint)
    snapshot_state: str | None

    def start(self) -> RestartPoint | None: ...
    def begin(self) -> None: ...
    def write(self, record: SourceRecord) -> None: ...
    def commit(self, checkpoint: RestartPoint) -> None: ...
    def abort(self) -> None: ...
    def close(self) -> None: ...


class Pump(Protocol):
    def start(self) -> None: ...
    def get(self, timeout: float) -> Chunk | None: ...
    def stop(self) -> None: ...


class Source(Protocol):
    """The change stream of one source database, opened at a restart point."""

    def current_restart_point(self) -> RestartPoint: ...
    def tables(self) -> tuple[str, ...]: ...
    def records(self, start: RestartPoint) -> Iterator[SourceRecord]: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class CaptureOptions:
    until_caught_up: bool = False
    # as KafkaStreamConfig's (see there): while behind, flush_max_ms decides how often to commit
    flush_max_events: int = 100_000
    flush_max_ms: int = 200
    stats_interval_s: float = 10.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    # An idle stretch (heartbeats, other tables' transactions) is committed as a checkpoint-only
    # Kafka transaction at most once per this many seconds, and the latest one within this long.
    idle_checkpoint_s: float = 1.0


@dataclass
class CaptureStats:
    rows: int = 0
    transactions: int = 0
    commits: int = 0
    idle_checkpoints: int = 0  # checkpoint-only commits (progress with no change to write)
    last_committed: RestartPoint | None = None
    last_source_ts_ms: int = 0
    _window_rows: int = 0
    _window_start: float = field(default_factory=time.monotonic)

    def log_interval(self, force: bool = False) -> None:
        now = time.monotonic()
        elapsed = now - self._window_start
        if not force and elapsed < 10.0:
            return
        rate = self._window_rows / elapsed if elapsed > 0 else 0.0
        lag = (
            f"{max(0.0, time.time() - self.last_source_ts_ms / 1000):.1f}s" if self.last_source_ts_ms else "-"
        )
        where = self.last_committed.to_string() if self.last_committed else "-"
        log.info(
            "captured %d rows in %d transactions (%.0f rows/s), %d commits; committed up to %s; lag %s",
            self.rows,
            self.transactions,
            rate,
            self.commits,
            where,
            lag,
        )
        self._window_rows = 0
        self._window_start = now


class CaptureDaemon:
    def __init__(
        self,
        open_writer: Callable[[], StreamWriter],
        open_source: Callable[[], Source],
        options: CaptureOptions,
        snapshots: Snapshots | None = None,
        policies: ColumnPolicies | None = None,
    ) -> None:
        self._open_writer = open_writer
        self._policies = policies  # column policies (cdc/policy), applied before the writer
        self._open_source = open_source
        self._options = options
        self._snapshots = snapshots
        self._supervisor = Supervisor(options.backoff_initial_s, options.backoff_max_s)
        self._stop = self._supervisor.stop_requested
        self.stats = CaptureStats()
        self.metrics: DaemonMetrics | None = None  # set by the CLI when `metrics` is configured

    def request_stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        self._supervisor.request_stop(signum, _frame)

    def run(self) -> int:
        """Capture until stopped (or caught up); returns the process exit code."""
        metrics = self.metrics
        with fewer_collections(CAPTURE_YOUNG_THRESHOLD):
            code = self._supervisor.run(metrics.attempt(self._run_once) if metrics else self._run_once)
        self.stats.log_interval(force=True)
        return code

    def _run_once(self) -> None:
        writer = self._open_writer()
        pump: Pump | None = None
        snapshots = self._snapshots
        try:
            checkpoint = writer.start()
            source = self._open_source()
            first_start, gap = checkpoint is None, False
            if (
                checkpoint is not None
                and snapshots is not None
                and snapshots.mode is BootstrapMode.WHEN_NEEDED
                and snapshots.binlog_gone(checkpoint)
            ):
                log.warning("the checkpoint's binlog %s was purged", checkpoint.transaction.file)
                checkpoint, gap = None, True
            state = None
            if snapshots is not None:
                stored = getattr(writer, "snapshot_state", None)
                state = snapshots.prepare(
                    stored, first_start=first_start, tables=source.tables(), after_gap=gap
                )
            if checkpoint is None:
                # Committed before reading anything: a crash before the first real commit must
                # resume here, not at whatever "current" means by then (and with the bootstraps
                # this start decided on).
                checkpoint = source.current_restart_point()
                writer.begin()
                if state is not None:
                    writer.write(SnapshotProgress(state.to_text(), 0))
                writer.commit(checkpoint)
                log.info(
                    "no checkpoint yet: starting at the source's current position %s", checkpoint.to_string()
                )
            else:
                log.info("resuming from checkpoint %s", checkpoint.to_string())
                if state is not None and state.to_text() != getattr(writer, "snapshot_state", None):
                    writer.begin()
                    writer.write(SnapshotProgress(state.to_text(), 0))
                    writer.commit(checkpoint)
            tables = source.tables()
            shown = ", ".join(tables[:10]) + (f" and {len(tables) - 10} more" if len(tables) > 10 else "")
            log.info("capturing %d tables: %s", len(tables), shown or "(none yet)")
            start = checkpoint
            pump = reader = ReaderPump(
                lambda: source.records(start), source.close, getattr(source, "input_ready", None)
            )
            if self.metrics is not None:
                self.metrics.queue = reader
            if snapshots is not None and state is not None:
                merged = snapshots.wrap(pump, start, state)
                if state.jobs and not getattr(source, "blocking", True):
                    # --until-caught-up with bootstraps to do: read on until they are done
                    source.read_until_stopped()  # type: ignore[attr-defined]
                    merged.stop_when_done(self.request_stop)
                pump = merged
            # outside the merge, so that snapshot rows get the column policies too
            pump = with_policies(pump, self._policies)
            pump.start()
            self._pump_into(pump, writer, start, reader.quiet, reader.drained)
        except BaseException:
            # Whatever was written since the last commit is dropped; the restart re-reads it.
            try:
                writer.abort()
            except HeadwaterError as exc:
                log.debug("abort after failure: %s", exc)
            raise
        finally:
            if pump is not None:
                pump.stop()
            writer.close()

    def _pump_into(
        self,
        pump: Pump,
        writer: StreamWriter,
        start: RestartPoint,
        quiet: Callable[[], bool] | None = None,
        drained: Callable[[], bool] | None = None,
    ) -> None:
        opts = self._options
        stats = self.stats
        # the restart point of the last boundary seen: a snapshot state with no rows to go with it
        # (a table found empty, say) is committed there
        # A TransactionEnd stands for its restart point until a commit needs it: building the
        # RestartPoint (a validated Position) for every single-row transaction was ~10% of the
        # writer thread's time, and most of them are passed over by the next one before a commit.
        here: RestartPoint | TransactionEnd = start
        committed_hook = getattr(pump, "committed", None)
        open_txn = False  # a Kafka transaction is open
        complete: RestartPoint | TransactionEnd | None = None  # end of the last whole source txn written
        mid_transaction = False
        events_since_commit = 0
        deadline = 0.0
        # Commit once everything handed over is written and the last commit is COMMIT_GAP_S old, even
        # if more input waits (``drained``, see COMMIT_GAP_S); 0 until the first commit.
        soon = 0.0
        quiet_soon = 0.0  # the same for a commit because the source is quiet (QUIET_GAP_S)
        # Idle checkpoint (SourceProgress): no captured change lies before ``idle``, and nothing is
        # written since the last commit; committed alone, at most once per idle_checkpoint_s.
        idle: RestartPoint | None = None
        idle_due = 0.0
        metrics = self.metrics
        # metrics: this Kafka transaction's row changes by table and op, added once it commits
        seen: Counter[tuple[str, str, str]] = Counter()
        transactions_at_commit = stats.transactions
        write_changes = getattr(writer, "write_changes", None) or _one_by_one(writer)
        # a run of whole transactions of one table, their ends included, in one call (KafkaStreamWriter)
        write_run = getattr(writer, "write_transactions", None)

        timed = timing_log.isEnabledFor(logging.DEBUG)
        if timed:
            log_collections(timing_log)
        begun = 0.0  # wall clock of the open Kafka transaction's begin (timing lines only)

        def commit(why: str) -> None:
            nonlocal open_txn, complete, events_since_commit, idle, transactions_at_commit, soon, quiet_soon
            assert complete is not None and not mid_transaction, "commit inside a source transaction"
            point = complete.restart if complete.__class__ is TransactionEnd else complete
            assert isinstance(point, RestartPoint)
            called = time.time()
            writer.commit(point)
            if timed:
                timing_log.debug(
                    "commit events=%d why=%s begun=%.6f called=%.6f done=%.6f",
                    events_since_commit, why, begun, called, time.time(),
                )  # fmt: skip
            if committed_hook is not None:
                committed_hook(getattr(writer, "snapshot_state", None))
            stats.commits += 1
            stats.last_committed = point
            if metrics is not None:
                txns = stats.transactions - transactions_at_commit
                transactions_at_commit = stats.transactions
                metrics.committed(seen, txns, stats.last_source_ts_ms if txns else 0)
                metrics.position = point
                seen.clear()
            open_txn, complete, events_since_commit, idle = False, None, 0, None
            returned = time.monotonic()
            soon, quiet_soon = returned + COMMIT_GAP_S, returned + QUIET_GAP_S

        def begin() -> None:
            nonlocal open_txn, deadline, begun
            writer.begin()
            open_txn = True
            deadline = time.monotonic() + opts.flush_max_ms / 1000
            if timed:
                begun = time.time()

        def commit_idle() -> None:
            nonlocal idle, idle_due
            assert idle is not None and not open_txn
            writer.begin()
            writer.commit(idle)
            stats.commits += 1
            stats.idle_checkpoints += 1
            stats.last_committed = idle
            if metrics is not None:
                metrics.committed(None, 0, 0)
                metrics.position = idle
            idle, idle_due = None, time.monotonic() + opts.idle_checkpoint_s

        if metrics is not None:
            metrics.phase = Phase.RUNNING
        while True:
            # Inside a source transaction nothing can be committed, so the flush deadline is no
            # reason to wake: polling without blocking there spun the loop (and held the GIL the
            # reading thread needs) until the transaction's next rows arrived.
            if complete is not None and not mid_transaction:
                due = deadline if drained is None else min(deadline, soon, quiet_soon)
                wait = max(due - time.monotonic(), 0.0)
            elif idle is not None:
                wait = max(idle_due - time.monotonic(), 0.0)
            else:
                wait = 0.5
            chunk = pump.get(wait)
            stats.log_interval()
            if metrics is not None:
                metrics.tick = time.monotonic()
            if chunk is None:
                # Only at a transaction boundary: the open Kafka transaction also holds whatever was
                # written of the source transaction in progress, and committing those rows with a
                # checkpoint before them would write them twice after a restart.
                if (
                    complete is not None
                    and not mid_transaction
                    and time.monotonic() >= (deadline if drained is None else min(deadline, soon, quiet_soon))
                ):
                    # nothing came while waiting out the gap after the last commit, or flush_max_ms
                    commit("timer" if time.monotonic() >= deadline else "gap")
                if idle is not None and time.monotonic() >= idle_due:
                    commit_idle()
                if self._stop.is_set() and not mid_transaction:
                    if complete is not None:
                        commit("stop")
                    elif idle is not None:
                        commit_idle()
                    return
                continue
            if isinstance(chunk, EndOfStream):
                if chunk.error is not None:
                    raise chunk.error
                if mid_transaction:  # the stream ended inside a transaction: redo it next time
                    raise SourceUnavailable("the binlog stream ended inside a transaction")
                if complete is not None:
                    commit("caught_up")
                elif idle is not None:
                    commit_idle()
                log.info("caught up with the source")
                return
            if metrics is not None:
                tally_chunk(chunk, seen)
            i, end = 0, len(chunk)
            while i < end:
                record = chunk[i]
                if record.__class__ is ChangeEvent:
                    # the rows of a run go to the writer together (its per-row Python was the limit)
                    if not open_txn:
                        begin()
                        idle = None  # the data's commit carries the checkpoint from now on
                    if write_run is None:
                        i = write_changes(chunk, i)
                        mid_transaction = True
                        continue
                    run = write_run(chunk, i, max(opts.flush_max_events - events_since_commit, 1))
                    i = run.stop
                    if not run.ends:
                        mid_transaction = True
                        continue
                    # what the TransactionEnd branch below does, once for the run's ends
                    last_end = chunk[run.last_end]
                    assert isinstance(last_end, TransactionEnd)
                    complete = here = last_end
                    mid_transaction = run.last_end != i - 1  # the next transaction's rows came too
                    events_since_commit += run.end_rows
                    stats.transactions += run.ends
                    stats.rows += run.end_rows
                    stats._window_rows += run.end_rows
                    stats.last_source_ts_ms = last_end.source_ts_ms
                    if not mid_transaction and (
                        events_since_commit >= opts.flush_max_events
                        or time.monotonic() >= deadline
                        or self._stop.is_set()
                    ):
                        commit("run")
                        if self._stop.is_set():
                            return
                    continue
                i += 1
                if record.__class__ is SnapshotProgress:
                    if not open_txn:
                        begin()
                    if complete is None and not mid_transaction:
                        complete, idle = idle or here, None
                    writer.write(record)
                    continue
                if record.__class__ is SourceProgress:
                    if not mid_transaction:  # it only comes between transactions; never trust less
                        restart = record.restart
                        here = restart
                        if open_txn:
                            complete = restart  # rides on the data's commit: the checkpoint goes further
                        else:
                            idle = restart
                    continue
                if not open_txn:
                    begin()
                    idle = None  # the data's commit carries the checkpoint from now on
                writer.write(record)
                if record.__class__ is TransactionEnd:
                    assert isinstance(record, TransactionEnd)
                    complete = here = record
                    mid_transaction = False
                    events_since_commit += record.row_count
                    stats.transactions += 1
                    stats.rows += record.row_count
                    stats._window_rows += record.row_count
                    stats.last_source_ts_ms = record.source_ts_ms
                    if (
                        events_since_commit >= opts.flush_max_events
                        or time.monotonic() >= deadline
                        or self._stop.is_set()
                    ):
                        commit("txn_end")
                        if self._stop.is_set():
                            return
                else:
                    mid_transaction = True
            # Commit on idle: the source has nothing more waiting, so this Kafka transaction would
            # only wait out flush_max_ms (latency) without gathering more; when busy, chunks keep
            # coming and transactions are batched up to flush_max_events / flush_max_ms.
            if complete is not None and not mid_transaction and quiet is not None:
                if quiet():
                    if drained is None or time.monotonic() >= quiet_soon:
                        commit("quiet")
                    # else the loop's wait ends at ``quiet_soon``, and the timer commits then ("gap")
                elif drained is not None and time.monotonic() >= soon and drained():
                    commit("drained")
            if idle is not None and time.monotonic() >= idle_due:
                commit_idle()


def _one_by_one(writer: StreamWriter) -> Callable[[list[SourceRecord], int], int]:
    """``write_changes`` for a writer without one: each change of the run through ``write``."""

    def write_changes(records: list[SourceRecord], start: int) -> int:
        i, end = start, len(records)
        while i < end and records[i].__class__ is ChangeEvent:
            writer.write(records[i])
            i += 1
        return i

    return write_changes
