"""The comparison `cdc reconcile` runs: every captured table against each copy in the config.

Used by the command, the daemon's scheduled runs, the repair's second comparison and the demo.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from cdc.config.models import (
    IcebergSinkConfig,
    KafkaStreamConfig,
    PipelineConfig,
    PostgresSourceConfig,
    SqlSinkConfig,
)
from cdc.core.errors import HeadwaterError
from cdc.core.positions import RestartPoint
from cdc.core.schemas import TableRef
from cdc.core.table_filter import TableFilter

if TYPE_CHECKING:
    from reconciler.model import CompareColumn
    from reconciler.report import Report
    from reconciler.stores import SqlRunner
    from reconciler.targets import ColumnLookup, Copy, SourceTable
    from sinks.contract import AppliedState

__all__ = ["reconcile_pipeline"]

_log = logging.getLogger("reconciler")

_FIRST_TIMED_SLICE = 10_000  # source rows in the first slice when a chunk time target is set

Resume = Callable[["AppliedState | None", TableRef], RestartPoint | None]


def _progress_reader(config: PipelineConfig, server_id: int) -> Resume:
    """A function giving where a copy would resume, from its applied state (and the idle stretch)."""
    from cdc.daemon.embedded_resume import PipelineIdentity, ProgressFile, StartFile, sink_resume_point

    source = config.any_source
    if isinstance(source, PostgresSourceConfig):
        from cdc.daemon.status_pg import pg_source_address

        identity = PipelineIdentity(config.name, pg_source_address(source), 0)  # as the daemon records it
    else:
        identity = PipelineIdentity(config.name, f"{source.host}:{source.port}", server_id)

    def resume(applied: AppliedState | None, ref: TableRef) -> RestartPoint | None:
        if config.stream is not None:
            return _kafka_resume(config, config.stream, applied, ref)
        try:
            start = StartFile(config.state_dir).read(identity)
        except HeadwaterError:
            start = None
        stretch = ProgressFile(config.state_dir).read(
            tuple(source.tables), tuple(source.exclude_tables), identity
        )
        return sink_resume_point(applied, start, stretch)

    return resume


def _kafka_resume(
    config: PipelineConfig, stream: KafkaStreamConfig, applied: AppliedState | None, ref: TableRef
) -> RestartPoint | None:
    """Kafka mode: a copy holds every change of ``ref`` up to the capture's checkpoint once it has
    consumed everything the table's topic holds. Its own applied position moves only with the
    records it applies, so a quiet table's copy would seem to stand still while the source moves on
    (idle checkpoints and heartbeats move the checkpoint, not the copy)."""
    from cdc.stream.checkpoints import read_checkpoint
    from cdc.stream.topics import TopicNames

    if applied is None:
        return None
    own = RestartPoint.after(applied.position)
    checkpoint = read_checkpoint(stream, config.name)  # first: the topic is then read past it
    if checkpoint is None or not _consumed_all(stream, TopicNames(config.name).table(ref), applied):
        return own
    return max(own, checkpoint.restart, key=lambda r: (r.transaction.file_seq, r.binlog_offset))


def _consumed_all(stream: KafkaStreamConfig, topic: str, applied: AppliedState) -> bool:
    """No committed record of ``topic`` lies past the offsets the copy stored."""
    import uuid

    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    from cdc.stream.kafka_clients import consumer_config

    timeout = stream.request_timeout_ms / 1000
    consumer = Consumer(consumer_config(stream, f"headwater-reconcile-{uuid.uuid4().hex}"))
    try:
        described = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if described is None or described.error is not None:
            return True  # no topic: nothing was ever written for the table
        at = [
            TopicPartition(topic, p, applied.offsets.get(f"{topic}:{p}", OFFSET_BEGINNING))
            for p in described.partitions
        ]
        consumer.assign(at)
        open_partitions = {tp.partition for tp in at}
        deadline = time.monotonic() + timeout
        while open_partitions and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            error = message.error()
            if error is None:
                return False  # a record the copy has not applied yet
            if error.code() == KafkaError._PARTITION_EOF:
                open_partitions.discard(message.partition())
        return not open_partitions
    finally:
        consumer.close()


def _column_lookup(config: PipelineConfig) -> ColumnLookup | None:
    """The pipeline's column policies as the reconciler applies them to source columns."""
    from cdc.policy import column_policies
    from reconciler.model import ValuePolicy

    policies = column_policies(config.policies)  # a hashed column without its key: ConfigError
    if policies is None:
        return None

    def lookup(ref: TableRef, column: CompareColumn) -> CompareColumn | None:
        rule = policies.source_column(ref, column.name, column.kind)
        if rule is None:
            return column
        if rule.excluded or rule.apply is None:
            return None
        policy = ValuePolicy(rule.name, column.kind, rule.apply, rule.masked)
        return dataclasses.replace(column, kind=rule.kind, scale=0, precision=0, policy=policy)

    return lookup


def reconcile_pipeline(
    config: PipelineConfig,
    tables: tuple[str, ...] = (),
    sink: str | None = None,
    wait_seconds: float = 30.0,
    chunk_rows: int | None = None,
    pause: float = 0.0,
    chunk_seconds: float = 0.0,
    max_lag: float = 0.0,
) -> Report:
    """Run the comparison; returns the reconciler's Report."""
    from reconciler.compare import CompareSettings
    from reconciler.model import CopyResult
    from reconciler.report import Report
    from reconciler.run import ReconcileOptions, reconcile_copy
    from reconciler.targets import KeylessTable, iceberg_copy, sql_copy

    started_at = dt.datetime.now(dt.UTC)
    started = time.monotonic()
    names = config.sink_names
    if sink is not None and sink not in names:
        raise click.UsageError(
            f"--sink {sink}: the config has no sink of that name (it has {', '.join(names)})"
        )
    settings = CompareSettings(pause=pause, chunk_seconds=chunk_seconds)
    if chunk_seconds > 0:
        settings = dataclasses.replace(settings, slice_rows=_FIRST_TIMED_SLICE)
    if chunk_rows is not None:
        settings = dataclasses.replace(settings, chunk_rows=chunk_rows, key_chunk_rows=chunk_rows)
    progress_dir = config.state_dir / "reconcile" / "progress"
    options = ReconcileOptions(settings, wait_seconds, progress_dir=progress_dir, max_lag=max_lag)
    lookup = _column_lookup(config)
    runner = _source_runner(config)
    results: list[CopyResult] = []
    errors: list[str] = []
    not_compared: list[str] = []
    try:
        postgresql = isinstance(config.any_source, PostgresSourceConfig)
        server_id = 0 if postgresql else int(runner.query("SELECT @@server_id", ())[0][0])
        resume = _progress_reader(config, server_id)
        captured = TableFilter(tuple(config.any_source.tables), tuple(config.any_source.exclude_tables))
        if tables:
            refs = []
            for t in tables:
                db, _, name = t.partition(".")
                if not name or not captured.accepts(db, name):
                    raise click.UsageError(f"table {t!r} is not one the pipeline captures (db.table)")
                refs.append(TableRef(db, name))
        elif postgresql:
            from reconciler.pg_source import list_pg_tables

            refs = list_pg_tables(runner, captured)
        else:
            rows = runner.query(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_type = 'BASE TABLE' "
                "AND table_schema NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys') "
                "ORDER BY 1, 2",
                (),
            )
            refs = [TableRef(str(d), str(t)) for d, t in rows if captured.accepts(str(d), str(t))]
        for ref in refs:
            try:
                source = _open_source(config, runner, ref, lookup)
            except KeylessTable as exc:
                # named on the command line: an error; found by the scan: told, and the run goes on
                (errors if tables else not_compared).append(f"{ref}: {exc}")
                continue
            except HeadwaterError as exc:
                errors.append(f"{ref}: {exc}")
                continue
            for name, sink_config in zip(names, config.sinks, strict=True):
                if sink is not None and name != sink:
                    continue
                if not TableFilter(tuple(sink_config.tables), tuple(sink_config.exclude_tables)).accepts(
                    ref.db, ref.table
                ):
                    continue
                copy: Copy | None = None
                try:
                    if isinstance(sink_config, SqlSinkConfig):
                        copy = sql_copy(name, sink_config, config.name, source)
                    elif isinstance(sink_config, IcebergSinkConfig):
                        copy = iceberg_copy(name, sink_config, source)
                    else:  # pragma: no cover - the config models allow no other type
                        continue
                    results.append(reconcile_copy(source, copy, _progress(resume, copy, ref), options))
                except HeadwaterError as exc:
                    errors.append(f"{ref} -> sink {name}: {exc}")
                except Exception as exc:  # noqa: BLE001 - a store's error is this copy's: exit 2, not 1 (drift)
                    # e.g. a copy whose column a user retyped fails inside the checksum SQL: name the
                    # copy and go on with the others (a traceback alone exited 1, read as "drift")
                    _log.exception("reconcile %s -> sink %s failed", ref, name)
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    errors.append(
                        f"{ref} -> sink {name}: could not be compared: {type(exc).__name__}: {first} "
                        "(traceback in the log)"
                    )
                finally:
                    if copy is not None:
                        copy.close()
    finally:
        runner.close()
    seconds = time.monotonic() - started
    return Report(config.name, started_at, seconds, tuple(results), tuple(errors), tuple(not_compared))


def _source_runner(config: PipelineConfig) -> SqlRunner:
    source = config.any_source
    if isinstance(source, PostgresSourceConfig):
        from cdc.sources.postgresql.reader import SESSION_OPTIONS
        from reconciler.pg_source import pg_source_runner

        return pg_source_runner(source, SESSION_OPTIONS)  # values read with the text the capture got
    from reconciler.targets import source_runner

    return source_runner(source)


def _open_source(
    config: PipelineConfig, runner: SqlRunner, ref: TableRef, lookup: ColumnLookup | None
) -> SourceTable:
    if isinstance(config.any_source, PostgresSourceConfig):
        from reconciler.pg_source import open_pg_source

        return open_pg_source(runner, ref, lookup)
    from reconciler.targets import open_source

    return open_source(runner, ref, lookup)


def _progress(resume: Resume, copy: Copy, ref: TableRef) -> Callable[[], RestartPoint | None]:
    return lambda: resume(copy.applied(), ref)
