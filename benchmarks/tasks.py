"""What a benchmark child process measures: capture to Kafka, and sink apply (embedded or from Kafka).

Each function runs the production objects (``CaptureDaemon``, ``EmbeddedDaemon``, ``SinkRunner`` with
``KafkaStreamWriter`` / ``KafkaChangeReader`` and the registry's sinks) over one binlog range and
returns its row count and seconds. Clocks start when the first record is read (capture, embedded) or
the first message arrives (Kafka), so producer fencing and consumer-group joins are left out; they end
when the daemon returns (everything committed).

Only what ``cdc sink`` loads is imported here at the top: the capture side (the binlog source, the
capture and embedded daemons, the benchmark's range reader: pymysql, python-mysql-replication,
``cdc.sources``) is imported inside the two tasks that capture, so that a ``sink_kafka`` child's
peak RSS is the command's (they added ~4.8 MiB to every ``cdc sink`` figure, mem4).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdc.config.models import IcebergSinkConfig, KafkaStreamConfig, SqlSinkConfig
from cdc.daemon.sink_runner import SinkRunner, SinkRunnerOptions
from cdc.devstack.connections import StackConnections
from cdc.stream.kafka_chunks import ChangeChunk
from cdc.stream.kafka_reader import ConsumedChange, KafkaChangeReader
from sinks.contract import Sink
from sinks.registry import open_sink

if TYPE_CHECKING:
    from benchmarks.decode_bench import Range
    from benchmarks.source_range import RangeSource

TARGETS = ("postgresql", "mariadb", "sqlite", "iceberg")


@dataclass(frozen=True)
class Place:
    """Where a sink target writes: a PostgreSQL schema, a MariaDB database, or a directory."""

    target: str
    name: str  # schema / database name (also the Iceberg namespace)
    directory: str  # SQLite file and Iceberg warehouse live here

    def sink_config(self, stack: StackConnections) -> SqlSinkConfig | IcebergSinkConfig:
        if self.target == "postgresql":
            return SqlSinkConfig(url=stack.postgres.sqlalchemy_url(), schema=self.name)
        if self.target == "mariadb":
            m = stack.mariadb
            url = f"mysql+pymysql://{m.root_user}:{m.root_password}@{m.host}:{m.port}/mysql?charset=utf8mb4"
            return SqlSinkConfig(url=url, schema=self.name)
        if self.target == "sqlite":
            return SqlSinkConfig(url=f"sqlite:///{Path(self.directory) / 'serving.db'}")
        if self.target == "iceberg":
            return IcebergSinkConfig(catalog=self.catalog, namespace=self.name)
        raise ValueError(f"unknown target {self.target!r}")

    @property
    def catalog(self) -> dict[str, str]:
        return {
            "type": "sql",
            "uri": f"sqlite:///{Path(self.directory) / 'catalog.db'}",
            "warehouse": f"file://{Path(self.directory) / 'warehouse'}",
        }


def _range(args: Mapping[str, Any]) -> Range:
    from benchmarks.decode_bench import Range

    return Range(**args["range"])


def _source(stack: StackConnections, args: Mapping[str, Any]) -> RangeSource:
    from benchmarks.source_range import RangeSource, source_config

    m = stack.mariadb
    config = source_config(m.host, m.port, m.user, m.password, int(args["server_id"]))
    return RangeSource(config, _range(args))


def capture(stack: StackConnections, args: Mapping[str, Any]) -> dict[str, Any]:
    """The binlog range into Kafka through the capture daemon (``cdc run`` with a stream)."""
    from cdc.daemon.capture import CaptureDaemon, CaptureOptions
    from cdc.stream import KafkaStreamWriter

    stream = KafkaStreamConfig(bootstrap_servers=stack.kafka.bootstrap_servers)
    pipeline = str(args["pipeline"])
    sources: list[RangeSource] = []

    def open_source() -> RangeSource:
        sources.append(_source(stack, args))
        return sources[-1]

    daemon = CaptureDaemon(
        lambda: KafkaStreamWriter(stream, pipeline, int(args["server_id"])),
        open_source,
        CaptureOptions(
            until_caught_up=True, flush_max_events=stream.flush_max_events, flush_max_ms=stream.flush_max_ms
        ),
    )
    cpu_before = time.process_time()
    code = daemon.run()
    ended = time.perf_counter()
    if code != 0 or not sources or sources[-1].started is None:
        raise RuntimeError(f"capture exited {code}")
    # CPU of the whole run (both threads, fencing and topic set-up included): rows per CPU-second
    # says how much of the machine capture needs, whatever else the shared machine was doing
    cpu_s = time.process_time() - cpu_before
    return {
        "rows": daemon.stats.rows,
        "seconds": ended - sources[-1].started,
        "commits": daemon.stats.commits,
        "cpu_s": cpu_s,
        "rows_per_cpu_s": daemon.stats.rows / cpu_s if cpu_s > 0 else 0.0,
    }


def _open(stack: StackConnections, place: Place, pipeline: str) -> Sink:
    return open_sink(place.sink_config(stack), pipeline)


def sink_embedded(stack: StackConnections, args: Mapping[str, Any]) -> dict[str, Any]:
    """The binlog range applied straight to one sink (``cdc run`` without a stream)."""
    from benchmarks.source_range import TimedRangeSource, source_config
    from cdc.daemon.embedded import EmbeddedDaemon, EmbeddedOptions

    place = Place(**args["place"])
    pipeline = str(args["pipeline"])
    sources: list[TimedRangeSource] = []
    m = stack.mariadb

    def open_source() -> RangeSource:
        config = source_config(m.host, m.port, m.user, m.password, int(args["server_id"]))
        sources.append(TimedRangeSource(config, _range(args)))
        return sources[-1]

    state = Path(place.directory) / "state"
    daemon = EmbeddedDaemon(lambda: [_open(stack, place, pipeline)], open_source, state, EmbeddedOptions())
    cpu_before = time.process_time()
    code = daemon.run()
    ended = time.perf_counter()
    if code != 0 or not sources or sources[-1].started is None:
        raise RuntimeError(f"embedded apply exited {code}")
    run = _cpu(daemon.rows_applied, cpu_before)
    return {
        "rows": daemon.rows_applied,
        "seconds": ended - sources[-1].started,
        # CPU over the same span as the clock, as sink_kafka's (the sink's imports and open, ~0.4 s
        # of CPU for a PostgreSQL sink, left out); the whole run's as well
        **_cpu(daemon.rows_applied, sources[-1].started_cpu),
        "cpu_s_run": run["cpu_s"],
        "rows_per_cpu_s_run": run["rows_per_cpu_s"],
    }


def _cpu(rows: int, cpu_before: float) -> dict[str, float]:
    """CPU of the process since ``cpu_before`` (every thread): rows per CPU-second says how much of the
    machine the apply needs, whatever else the shared machine was doing meanwhile."""
    cpu_s = time.process_time() - cpu_before
    return {"cpu_s": cpu_s, "rows_per_cpu_s": rows / cpu_s if cpu_s > 0 else 0.0}


class _TimedReader(KafkaChangeReader):
    """Notes when the first change arrives (the clock starts after the consumer group's join)."""

    first_data: float | None = None
    first_data_cpu = 0.0

    def poll(self, max_messages: int, timeout_s: float) -> list[ConsumedChange]:
        changes = super().poll(max_messages, timeout_s)
        if changes and self.first_data is None:
            self.first_data = time.perf_counter()
            self.first_data_cpu = time.process_time()
        return changes

    def poll_chunks(self, max_messages: int, timeout_s: float) -> list[ChangeChunk]:
        chunks = super().poll_chunks(max_messages, timeout_s)
        if chunks and self.first_data is None:
            self.first_data = time.perf_counter()
            self.first_data_cpu = time.process_time()
        return chunks


def sink_kafka(stack: StackConnections, args: Mapping[str, Any]) -> dict[str, Any]:
    """A captured pipeline's topics applied to one sink (``cdc sink --until-caught-up``)."""
    place = Place(**args["place"])
    pipeline = str(args["pipeline"])  # the captured pipeline whose topics are read
    stream = KafkaStreamConfig(bootstrap_servers=stack.kafka.bootstrap_servers)
    readers: list[_TimedReader] = []

    def open_reader(offsets: Any) -> KafkaChangeReader:
        readers.append(_TimedReader(stream, pipeline, offsets, group_id=f"bench-{place.name}"))
        return readers[-1]

    runner = SinkRunner(
        lambda: [_open(stack, place, pipeline)], open_reader, SinkRunnerOptions(until_caught_up=True)
    )
    code = runner.run()
    ended = time.perf_counter()
    if code != 0 or not readers or readers[-1].first_data is None:
        raise RuntimeError(f"sink from Kafka exited {code} (or read nothing)")
    return {
        "rows": runner.applied_events,
        "seconds": ended - readers[-1].first_data,
        # CPU over the same span as the clock: imports and the group join left out
        **_cpu(runner.applied_events, readers[-1].first_data_cpu),
    }
