"""What a daemon (`cdc run` in either mode, `cdc sink`) tells Prometheus, and its health.

The daemons' loops only touch plain attributes of :class:`DaemonMetrics`, once per commit or batch
(never per row): rows are tallied by table and op from a whole batch with C-level iteration, and
everything else (lags, ages, queue depth, bootstrap progress, the last reconciliation) is read when
Prometheus scrapes, by :class:`_Collector`. So an idle endpoint costs the hot path nothing more than a
few stores per batch, and a daemon without a ``metrics`` section pays only a ``None`` check.

Names follow Debezium's MBean attributes where one exists (``MilliSecondsBehindSource`` ->
``headwater_seconds_behind_source``), in Prometheus base units and snake_case; docs/operations.md
lists the mapping.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from operator import attrgetter, countOf
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from cdc.core.events import ChangeEvent
from cdc.core.positions import RestartPoint

if TYPE_CHECKING:
    from snapshotter.state import SnapshotState

log = logging.getLogger("cdc.metrics")

__all__ = ["DaemonMetrics", "Phase", "registry_for", "tally", "tally_chunk"]

PREFIX = "headwater_"

# (db, table, op) of a ChangeEvent, read at C speed: no Python-level hash (TableRef, Op) per row
_EVENT_KEY = attrgetter("schema.ref.db", "schema.ref.table", "op._value_")
_is_event = ChangeEvent.__instancecheck__
_SCHEMA = attrgetter("schema")
_OP = attrgetter("op")


def tally(records: Iterable[object], into: Counter[tuple[str, str, str]]) -> None:
    """Count the ChangeEvents among ``records`` by (db, table, op) into ``into``."""
    into.update(map(_EVENT_KEY, filter(_is_event, records)))


def tally_chunk(chunk: Sequence[object], into: Counter[tuple[str, str, str]]) -> None:
    """:func:`tally` over one of the reader's chunks. A chunk is cut at every transaction end, so
    most hold changes of one table and one op (a statement's rows): that case is counted whole, with
    two C-level identity passes instead of a key per row; mixed chunks are counted row by row.
    Called as each chunk is handed over: holding chunks until the commit keeps thousands of events
    alive through the garbage collector's young generations, which costs more than counting."""
    body = chunk if chunk and chunk[-1].__class__ is ChangeEvent else chunk[:-1]
    if not body:
        return
    first = body[0]
    if len(body) == 1:  # single-row transactions: the cheapest way for one
        if first.__class__ is ChangeEvent:
            into[_EVENT_KEY(first)] += 1
        return
    try:
        schema, op = _SCHEMA(first), _OP(first)
        same = countOf(map(id, map(_SCHEMA, body)), id(schema)) + countOf(map(_OP, body), op)
    except AttributeError:  # a schema change or a snapshot's progress record among them
        same = -1
    if same == 2 * len(body):
        into[(schema.ref.db, schema.ref.table, op._value_)] += len(body)
    else:
        tally(body, into)


class Phase(enum.Enum):
    STARTING = "starting"  # an attempt is connecting (source, stream, sinks) and preparing
    RUNNING = "running"  # the loop reads and writes: ready
    BACKOFF = "backoff"  # the last attempt failed; waiting to retry
    STOPPED = "stopped"


class QueueGauge(Protocol):
    def depth(self) -> tuple[int, int]: ...  # (chunks queued, capacity in chunks)


class DaemonMetrics:
    """Live state of one daemon, written by its loop thread, read by the scrape thread.

    Every field is a single reference or number, replaced whole: a reader on another thread sees
    either the old or the new value, never half of one (the GIL makes each store atomic).
    """

    def __init__(self, daemon: str, pipeline: str, state_dir: Path | None = None) -> None:
        self.daemon = daemon  # "capture", "embedded", "sink"
        self.pipeline = pipeline
        self.state_dir = state_dir  # for the last reconciliation (reconciler's last.json)
        self.events: Counter[tuple[str, str, str]] = Counter()  # committed/applied, by (db, table, op)
        self.transactions = 0  # source transactions committed (capture) or applied (embedded)
        self.commits = 0
        self.last_event_at = 0.0  # time.time() of the last batch with a row change committed/applied
        self.last_commit_at = 0.0  # time.time() of the last commit/flush (idle checkpoints too)
        self.behind_ms: float | None = None  # at the last commit: its time minus the newest change's
        self.position: RestartPoint | None = None  # durable up to here (for the bytes lag)
        self.bytes_behind: int | None = None  # set by the source poller
        self.errors: Counter[str] = Counter()  # failed attempts by exception class
        self.phase = Phase.STARTING
        self.tick = time.monotonic()  # the loop's last turn (liveness)
        self.queue: QueueGauge | None = None
        self.snapshot_state: Callable[[], SnapshotState | None] | None = None
        self.started_at = time.time()

    # -- the loops' side ---------------------------------------------------------------------

    def attempt(self, run: Callable[[], None]) -> Callable[[], None]:
        """``run`` (one Supervisor attempt) with its phase and failures recorded."""

        def attempt() -> None:
            self.phase, self.tick = Phase.STARTING, time.monotonic()
            try:
                run()
            except KeyboardInterrupt:
                self.phase = Phase.STOPPED
                raise
            except BaseException as exc:
                self.errors[type(exc).__name__] += 1
                self.phase, self.tick = Phase.BACKOFF, time.monotonic()
                raise
            self.phase = Phase.STOPPED

        return attempt

    def committed(
        self, events: Counter[tuple[str, str, str]] | None, transactions: int, source_ts_ms: int
    ) -> None:
        """A commit (or, embedded and `cdc sink`, an apply) of ``events``; ``source_ts_ms`` is the
        newest change's source time, 0 for a checkpoint with nothing behind it (caught up)."""
        now = time.time()
        if events:
            self.events.update(events)
            self.last_event_at = now
        self.transactions += transactions
        self.commits += 1
        self.last_commit_at = now
        self.behind_ms = max(0.0, now * 1000 - source_ts_ms) if source_ts_ms else 0.0

    def flushed(self, position: RestartPoint | None = None) -> None:
        """The sinks flushed (durable up to ``position``, when known)."""
        self.last_commit_at = time.time()
        if position is not None:
            self.position = position

    # -- health ------------------------------------------------------------------------------

    def live(self, within_s: float) -> bool:
        """The process loop turns: it ticked within ``within_s``, or it is waiting out a backoff."""
        return self.phase is Phase.BACKOFF or time.monotonic() - self.tick <= within_s

    def ready(self) -> bool:
        """Connected to the source and the stream/sinks, and running (not starting, not backing off)."""
        return self.phase is Phase.RUNNING


def registry_for(metrics: DaemonMetrics) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(metrics))
    return registry


class _Collector(Collector):
    def __init__(self, metrics: DaemonMetrics) -> None:
        self._m = metrics
        self._reconcile_cache: tuple[float, list[tuple[str, str, str]]] = (-1.0, [])

    def collect(self) -> Iterator[Metric]:
        m = self._m
        now = time.time()
        labels = ["pipeline", "daemon"]
        base = [m.pipeline, m.daemon]

        events = CounterMetricFamily(
            PREFIX + "number_of_events_seen",
            "Row changes committed (cdc run with a stream) or applied (embedded, cdc sink), by table "
            "and op (Debezium TotalNumberOfEventsSeen)",
            labels=[*labels, "table", "op"],
        )
        for (db, table, op), count in sorted(dict(m.events).items()):
            events.add_metric([*base, f"{db}.{table}", op], count)
        yield events
        yield _counter(
            "number_of_committed_transactions",
            "Source transactions committed/applied (Debezium NumberOfCommittedTransactions)",
            labels,
            base,
            m.transactions,
        )
        yield _counter("commits", "Commits (Kafka transactions, sink batches)", labels, base, m.commits)
        yield _gauge(
            "seconds_behind_source",
            "At the last commit: its time minus the source commit time of its newest change; 0 "
            "after an idle checkpoint (Debezium MilliSecondsBehindSource / 1000)",
            labels,
            base,
            None if m.behind_ms is None else m.behind_ms / 1000,
        )
        yield _gauge(
            "bytes_behind_source",
            "Binlog bytes between the durable position and the source's binlog end (cdc run)",
            labels,
            base,
            m.bytes_behind,
        )
        yield _gauge(
            "seconds_since_last_event",
            "Since the last row change was committed/applied (Debezium MilliSecondsSinceLastEvent / 1000)",
            labels,
            base,
            now - m.last_event_at if m.last_event_at else None,
        )
        yield _gauge(
            "seconds_since_last_commit",
            "Since the last commit or flush, idle checkpoints included (grows only when stuck)",
            labels,
            base,
            now - m.last_commit_at if m.last_commit_at else None,
        )
        depth = m.queue.depth() if m.queue is not None else None
        yield _gauge(
            "queue_total_capacity",
            "Chunks (up to 512 records each) the binlog reader may queue (Debezium QueueTotalCapacity)",
            labels,
            base,
            None if depth is None else depth[1],
        )
        yield _gauge(
            "queue_remaining_capacity",
            "Chunks the reader may still queue before it waits (Debezium QueueRemainingCapacity)",
            labels,
            base,
            None if depth is None else depth[1] - depth[0],
        )
        errors = CounterMetricFamily(
            PREFIX + "errors", "Failed daemon attempts by error class", labels=[*labels, "kind"]
        )
        for kind, count in sorted(dict(m.errors).items()):
            errors.add_metric([*base, kind], count)
        yield errors
        up = GaugeMetricFamily(PREFIX + "ready", "1 while connected and running", labels=labels)
        up.add_metric(base, 1.0 if m.ready() else 0.0)
        yield up
        yield from self._snapshots(labels, base)
        yield self._reconciliation(labels, base)

    def _snapshots(self, labels: list[str], base: list[str]) -> Iterator[Metric]:
        m = self._m
        state = m.snapshot_state() if m.snapshot_state is not None else None
        rows = GaugeMetricFamily(
            PREFIX + "rows_scanned",
            "Bootstrap rows read per table, running and recently finished (Debezium RowsScanned)",
            labels=[*labels, "table"],
        )
        chunks = GaugeMetricFamily(
            PREFIX + "snapshot_chunks", "Bootstrap chunks read per table", labels=[*labels, "table"]
        )
        if state is not None:
            done = {str(f.table): (f.rows, f.chunks) for f in state.finished}
            done.update({str(j.table): (j.rows, j.chunks) for j in state.jobs})
            for table, (n_rows, n_chunks) in sorted(done.items()):
                rows.add_metric([*base, table], n_rows)
                chunks.add_metric([*base, table], n_chunks)
        yield rows
        yield chunks
        yield _gauge(
            "snapshot_running",
            "1 while a bootstrap is under way (Debezium SnapshotRunning)",
            labels,
            base,
            None if m.snapshot_state is None else float(bool(state and state.jobs)),
        )
        yield _gauge(
            "remaining_table_count",
            "Tables still to bootstrap, the one being read included (Debezium RemainingTableCount)",
            labels,
            base,
            None if m.snapshot_state is None else (len(state.jobs) if state else 0),
        )

    def _reconciliation(self, labels: list[str], base: list[str]) -> Metric:
        family = GaugeMetricFamily(
            PREFIX + "reconciliation_verdict",
            "1 for the verdict (match, drift, behind, error) of the last `cdc reconcile` of each table "
            "and copy; no sample before the first run",
            labels=[*labels, "table", "sink", "verdict"],
        )
        for table, sink, verdict in self._last_reconciliation():
            family.add_metric([*base, table, sink, verdict], 1.0)
        return family

    def _last_reconciliation(self) -> list[tuple[str, str, str]]:
        state_dir = self._m.state_dir
        if state_dir is None:
            return []
        path = state_dir / "reconcile" / "last.json"
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return []
        if mtime == self._reconcile_cache[0]:  # read again only when `cdc reconcile` wrote it
            return self._reconcile_cache[1]
        from reconciler.report import last_results

        try:
            found = [(r.table, r.sink, r.verdict) for r in last_results(state_dir)]
        except (OSError, ValueError, KeyError) as exc:  # half-written by an older reconciler: next scrape
            log.debug("reading %s: %s", path, exc)
            return self._reconcile_cache[1]
        self._reconcile_cache = (mtime, found)
        return found


def _gauge(name: str, doc: str, labels: list[str], base: list[str], value: float | None) -> Metric:
    family = GaugeMetricFamily(PREFIX + name, doc, labels=labels)
    if value is not None:
        family.add_metric(base, float(value))
    return family


def _counter(name: str, doc: str, labels: list[str], base: list[str], value: float) -> Metric:
    family = CounterMetricFamily(PREFIX + name, doc, labels=labels)
    family.add_metric(base, value)
    return family


class SourcePoller:
    """Every ``every_s``, the binlog bytes between the durable position and the source's end.

    On its own thread, with its own short connection: a scrape never waits for the source, and a
    source that does not answer leaves the gauge at its last value (readiness says the rest).
    """

    def __init__(
        self, metrics: DaemonMetrics, bytes_behind: Callable[[str, int], int | None], every_s: float
    ):
        self._metrics = metrics
        self._bytes_behind = bytes_behind
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-source-lag", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            point = self._metrics.position
            if point is None:
                continue
            try:
                self._metrics.bytes_behind = self._bytes_behind(point.transaction.file, point.binlog_offset)
            except Exception as exc:  # noqa: BLE001 - a gauge left stale; the daemon reports the source itself
                log.debug("binlog lag for metrics: %s", exc)
