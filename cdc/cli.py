"""The `cdc` command line: the only place, with the daemon, that wires the packages together.

Exit codes follow DESIGN.md: 0 success, 1 a finding (drift), 2 an error (bad config, a service down).
"""

from __future__ import annotations

from cdc import early_stop

if __name__ == "__main__":  # `python -m cdc.cli`; the `cdc` script goes through cdc.entry
    early_stop.listen()  # before the imports below: they take most of a second

# the imports below come after listening for SIGTERM, on purpose
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cdc import __version__
from cdc.cli_lazy import LazyGroup
from cdc.cli_options import CONFIG_OPTION
from cdc.cli_options import load_or_exit as load_or_exit  # re-exported: commands import it from here
from cdc.config import PipelineConfig
from cdc.config.models import IcebergSinkConfig
from cdc.core.errors import ConfigError, HeadwaterError
from cdc.lineage import hooks as lineage
from cdc.logs import LOG_FORMATS, configure_logging

if TYPE_CHECKING:
    from cdc.daemon.health import Observed
    from cdc.daemon.run_state import RunRecorder
    from cdc.daemon.snapshots import Snapshots
    from cdc.policy import ColumnPolicies


_DAEMONS = ("run", "sink")  # the commands whose supervisor takes a SIGTERM as a stop request


def _dev() -> click.Command:
    from cdc.demo import demo
    from cdc.devstack.commands import dev

    dev.add_command(demo)
    return dev


# imported when invoked (cdc/cli_lazy.py): a daemon does not hold the other commands' imports
_COMMANDS: dict[str, str | Callable[[], click.Command]] = {
    "bootstrap": "cdc.bootstrap_command:bootstrap",
    "catalog": "cdc.catalog_command:catalog",
    "dev": _dev,
    "reconcile": "cdc.reconcile_command:reconcile",
    "schema": "cdc.schema_commands:schema",
    "status": "cdc.status_command:status",
}


@click.group(
    cls=LazyGroup,
    lazy_commands=_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="cdc")
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="How much the daemon logs (to stderr).",
)
@click.option(
    "--log-format",
    default="text",
    show_default=True,
    envvar="HEADWATER_LOG_FORMAT",
    type=click.Choice(LOG_FORMATS),
    help="json: one JSON object per line (ts, level, logger, message, exception); secrets masked.",
)
def main(log_level: str, log_format: str) -> None:
    """Headwater: change-data-capture from MariaDB into Kafka, Iceberg and serving databases.

    One config file per source database. Start a local MariaDB, Kafka and PostgreSQL with
    `cdc dev up`, then check a config with `cdc validate -c configs/embedded.yaml`.
    """
    if click.get_current_context().invoked_subcommand not in _DAEMONS:
        early_stop.release()  # no supervisor will take a SIGTERM: it ends the process again
    configure_logging(log_level, log_format)


@main.command()
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the resolved config as JSON.")
def validate(config_path: Path, as_json: bool) -> None:
    """Check a config file: every problem is named by its key path; secrets are masked.

    Exits 0 when the config is valid, 2 otherwise.
    """
    config = load_or_exit(config_path)
    if as_json:
        click.echo(json.dumps(_masked(config), indent=2))
        return
    mode = "embedded (no stream: changes go straight to the sinks)" if config.embedded else "Kafka stream"
    click.echo(f"{config_path}: valid")
    click.echo(f"  pipeline  {config.name} ({mode})")
    click.echo(
        f"  source    {config.source.type} {config.source.host}:{config.source.port}"
        f" as {config.source.user}, tables {', '.join(config.source.tables)}"
    )
    if config.stream is not None:
        click.echo(f"  stream    kafka {config.stream.bootstrap_servers}")
    for index, sink in enumerate(config.sinks):
        target = getattr(sink, "url", None) or getattr(sink, "namespace", "")
        click.echo(f"  sink[{index}]   {sink.type} {_mask(str(target))}")
    click.echo(f"  state_dir {config.state_dir}")


@main.command()
@CONFIG_OPTION
@click.option(
    "--until-caught-up",
    is_flag=True,
    help="Exit 0 once everything up to the source's position at start has been durably written.",
)
def run(config_path: Path, until_caught_up: bool) -> None:
    """The daemon for one source database.

    With a `stream` in the config: capture the binlog into Kafka, exactly once (a transactional
    producer; the checkpoint commits with the data). Without one (embedded mode): apply the changes
    straight to the sinks, each storing its applied position with its data.

    SIGTERM or SIGINT finishes the open transaction and exits 0; a second signal aborts it (nothing
    is lost: the next start resumes from the last checkpoint). Exit 2 on an error an operator must
    fix (bad config, purged binlog, a second daemon took over).
    """
    from cdc.daemon.memory_settings import system_pool_from_start

    system_pool_from_start()  # before pyarrow loads: embedded sinks write Parquet and COPY from Arrow
    config = load_or_exit(config_path)
    _hold_run_lock(config)
    if config.any_source.type == "postgresql":
        sys.exit(_run_postgresql(config, until_caught_up))
    if config.stream is None:
        sys.exit(_run_embedded(config, until_caught_up))
    from cdc.daemon.capture import CaptureDaemon, CaptureOptions
    from cdc.daemon.mariadb_source import MariaDbSource
    from cdc.daemon.schema_guard import guarded
    from cdc.daemon.snapshots import snapshots_for
    from cdc.stream import KafkaStreamWriter

    stream = config.stream
    options = CaptureOptions(
        until_caught_up=until_caught_up,
        flush_max_events=stream.flush_max_events,
        flush_max_ms=stream.flush_max_ms,
    )
    snapshots = snapshots_for(config)
    daemon = CaptureDaemon(
        lambda: KafkaStreamWriter(stream, config.name, config.source.server_id),
        lambda: MariaDbSource(config.source, blocking=not until_caught_up, guard=guarded(config)),
        options,
        snapshots,
        _policies_or_exit(config),
    )
    _serve_metrics(config, daemon, "capture", snapshots)
    _record_runs(config, "run")
    sys.exit(_finished(daemon.run()))


def _run_postgresql(config: PipelineConfig, until_caught_up: bool) -> int:
    """`cdc run` of a PostgreSQL source: logical replication into Kafka, or straight to the sinks
    (cdc/daemon/postgresql_source.py)."""
    from cdc.daemon.postgresql_source import postgresql_capture, postgresql_embedded

    if config.stream is None and not config.sinks:
        click.echo("error: embedded mode (no `stream`) needs at least one entry in `sinks`", err=True)
        return 2
    try:
        if config.stream is None:
            recorder = _record_runs(config, "run")
            embedded = postgresql_embedded(config, until_caught_up=until_caught_up, recorder=recorder)
            _serve_metrics(config, embedded, "embedded", None)
            return _finished(embedded.run())
        policies = _policies_or_exit(config)
        daemon = postgresql_capture(config, until_caught_up=until_caught_up, policies=policies)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    _serve_metrics(config, daemon, "capture", None)
    _record_runs(config, "run")
    return _finished(daemon.run())


def _policies_or_exit(config: PipelineConfig) -> ColumnPolicies | None:
    """The config's column policies (their HMAC key from the environment); exit 2 if it is missing."""
    from cdc.policy import column_policies

    try:
        return column_policies(config.policies)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


def _hold_run_lock(config: PipelineConfig) -> None:
    """Say "a daemon runs" to `cdc bootstrap` on this host for as long as this process lives; and
    start the scheduled reconciliation, if the config has one (it repairs through this daemon)."""
    from cdc.daemon.reconcile_schedule import start_reconcile_schedule
    from cdc.daemon.run_lock import RunLock

    lock = RunLock(config.state_dir, config.name)
    if not lock.acquire():
        click.echo(
            f"warning: another `cdc run` of pipeline {config.name!r} (pid {lock.holder()}) is running "
            "on this host; the newer one takes the pipeline over",
            err=True,
        )
    _RUN_LOCKS.append(lock)  # released by the kernel when the process ends
    start_reconcile_schedule(config)


_RUN_LOCKS: list[object] = []


def _record_runs(config: PipelineConfig, command: str) -> RunRecorder:
    """Keep `command`'s run-state file (start, errors, progress, exit) for `cdc status`."""
    from cdc.daemon.run_state import RunRecorder
    from cdc.daemon.supervisor import observe

    config.state_dir.mkdir(parents=True, exist_ok=True)
    recorder = RunRecorder(config.state_dir, command, config.name)
    observe(recorder)
    lineage.started(config, command)  # OpenLineage START (and RUNNING) when `lineage` is configured
    return recorder


def _run_embedded(config: PipelineConfig, until_caught_up: bool) -> int:
    from cdc.daemon.embedded_wiring import embedded_daemon
    from cdc.daemon.maintenance_schedule import start_maintenance

    if not config.sinks:
        click.echo("error: embedded mode (no `stream`) needs at least one entry in `sinks`", err=True)
        return 2
    from cdc.daemon.snapshots import snapshots_for

    recorder = _record_runs(config, "run")
    snapshots = snapshots_for(config)
    try:
        daemon = embedded_daemon(
            config, until_caught_up=until_caught_up, recorder=recorder, snapshots=snapshots
        )
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        recorder.exited(2, str(exc))
        return 2
    _serve_metrics(config, daemon, "embedded", snapshots)
    start_maintenance(config.sinks, config.name, config.catalog)
    return _finished(daemon.run())


def _serve_metrics(
    config: PipelineConfig, daemon: Observed, kind: str, snapshots: Snapshots | None = None
) -> None:
    """The `metrics` section's endpoint (Prometheus, /healthz, /readyz); exit 2 if it cannot listen."""
    from cdc.daemon.health import serve_daemon

    try:
        serve_daemon(config, daemon, kind, snapshots)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


def _finished(code: int) -> int:
    from cdc.daemon.supervisor import observe

    observe(None)  # the run is recorded; nothing else in this process reports to its file
    lineage.finished(code)  # COMPLETE, or FAIL with the recorded error
    return code


@main.command()
@CONFIG_OPTION
@click.option(
    "--until-caught-up",
    is_flag=True,
    help="Exit 0 once every assigned partition has been read to its end and applied.",
)
@click.option(
    "--accept-gap",
    is_flag=True,
    help="A sink that needs messages Kafka no longer holds (retention) starts from what each partition "
    "holds now, with a warning naming what it skips, instead of stopping.",
)
def sink(config_path: Path, until_caught_up: bool, accept_gap: bool) -> None:
    """Consume the pipeline's Kafka topics into its sinks (a consumer group: run several to share).

    read_committed, so only what `cdc run` committed is seen; each sink stores the consumed offsets
    with its data, and a restart seeks to them: nothing is applied twice or skipped.
    """
    from cdc.daemon.memory_settings import system_pool_from_start

    system_pool_from_start()  # before pyarrow loads (cdc/daemon/memory_settings.py says why)
    config = load_or_exit(config_path)
    if config.stream is None:
        click.echo(
            "error: `cdc sink` reads the Kafka stream; this config has no `stream` section "
            "(in embedded mode `cdc run` applies to the sinks itself)",
            err=True,
        )
        sys.exit(2)
    if not config.sinks:
        click.echo("error: the config has no `sinks`", err=True)
        sys.exit(2)
    from cdc.daemon.maintenance_schedule import start_maintenance
    from cdc.daemon.sink_factory import sink_factory
    from cdc.daemon.sink_runner import SinkRunner, SinkRunnerOptions
    from cdc.stream.kafka_reader import KafkaChangeReader

    stream = config.stream
    recorder = _record_runs(config, "sink")
    try:
        open_sinks = sink_factory(config)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        recorder.exited(2, str(exc))
        sys.exit(2)
    if not until_caught_up:
        start_maintenance(config.sinks, config.name, config.catalog)
    batch = config.batch
    runner = SinkRunner(
        open_sinks,
        lambda offsets: KafkaChangeReader(stream, config.name, offsets, stream.consumer_group),
        SinkRunnerOptions(
            until_caught_up,
            batch.max_events,
            batch.max_ms,
            batch.idle_flush_seconds,
            accept_gap=accept_gap,
        ),
    )
    _serve_metrics(config, runner, "sink")
    sys.exit(_finished(runner.run()))


def _iceberg_sinks(config: PipelineConfig) -> list[IcebergSinkConfig]:
    found = [s for s in config.sinks if isinstance(s, IcebergSinkConfig)]
    if not found:
        click.echo("error: the config has no `type: iceberg` sink", err=True)
        sys.exit(2)
    return found


@main.command()
@CONFIG_OPTION
@click.argument("table")
@click.option("--at", "at", required=True, help="A position (mdb1:...) or an ISO time (naive = UTC).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "jsonl", "csv"]),
    default="table",
    show_default=True,
)
@click.option("--limit", type=int, default=None, help="Print at most this many rows (table format).")
def history(config_path: Path, table: str, at: str, fmt: str, limit: int | None) -> None:
    """A table's rows as of a position or a time, rebuilt from its Iceberg history.

    TABLE is db.table. The last change per key at or before --at wins; deletes and truncates are
    respected.
    """
    config = load_or_exit(config_path)
    sink_config = _iceberg_sinks(config)[0]
    import duckdb

    from sinks.iceberg import history_rows_as_of

    try:
        rows = history_rows_as_of(sink_config, config.name, table, at)
    except HeadwaterError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    from sinks.iceberg.retention import horizon_of

    horizon = horizon_of(sink_config, table)
    if horizon is not None:
        click.echo(
            f"note: {table}'s history is kept from {horizon.isoformat()} on (history_retention_days): "
            "rows last changed before it are not shown",
            err=True,
        )
    relation = duckdb.from_arrow(rows)
    if fmt == "table":
        click.echo(f"{table} as of {at}: {rows.num_rows} rows")
        relation.show(max_rows=limit or 10_000, max_width=200)
    elif fmt == "csv":
        import pyarrow.csv as pacsv

        sink = sys.stdout.buffer
        pacsv.write_csv(rows, sink)
    else:
        for row in rows.to_pylist():
            click.echo(json.dumps(row, default=_json_value, ensure_ascii=False))


@main.command()
@CONFIG_OPTION
def maintain(config_path: Path) -> None:
    """Iceberg upkeep: retention, rewrite small files of closed days, expire old snapshots.

    Tables with `history_retention_days` lose the changes older than it, and their files. Safe while
    the daemon runs (a commit that loses a race is retried or reported). Also runs inside the daemon
    every `maintenance_interval_hours`.
    """
    config = load_or_exit(config_path)
    from cdc.daemon.maintenance_schedule import retention_of
    from sinks.iceberg import maintain as run_maintain

    for sink_config in _iceberg_sinks(config):
        try:
            report = run_maintain(sink_config, config.name, retention=retention_of(config.catalog))
        except HeadwaterError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        click.echo(f"{sink_config.namespace}: {len(report.tables)} tables")
        for t in report.tables:
            days = ", ".join(t.partitions_rewritten) or "none"
            click.echo(
                f"  {t.identifier}: files {t.files_before} -> {t.files_after}, snapshots "
                f"{t.snapshots_before} -> {t.snapshots_after}, days rewritten: {days} "
                f"({t.rows_rewritten} rows)"
            )
            if t.retention is not None:
                r = t.retention
                click.echo(
                    f"    retention: {r.rows_deleted} rows before {r.horizon.isoformat()} deleted, "
                    f"{r.data_files_removed} data files removed"
                )
            if t.files_removed:
                click.echo(f"    removed from storage: {t.files_removed} files, {t.bytes_removed} bytes")
            for failure in t.failed:
                click.echo(f"    skipped: {failure}")


def _json_value(value: object) -> object:
    """As the Kafka envelope spells values: bytes in base64, decimals as text, times in ISO 8601."""
    import base64

    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _mask(text: str) -> str:
    from cdc.logs import redact

    return redact(text)


def _masked(config: PipelineConfig) -> object:
    data = json.loads(config.model_dump_json(by_alias=True))
    data["source"]["password"] = "***" if config.source.password.get_secret_value() else ""
    return json.loads(_mask(json.dumps(data)))


if __name__ == "__main__":
    main()
