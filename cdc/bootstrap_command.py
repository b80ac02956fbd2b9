"""`cdc bootstrap -c CONFIG TABLE... [--sink NAME]`: the existing rows of tables, handed over to the stream.

- With `cdc run` running for the pipeline (on this host): the request goes to it through a file in
  the state directory, and the daemon reads the tables in chunks while it streams; this command
  follows the progress until the daemon has committed the last chunk (``--no-wait`` returns at once).
- With no daemon running: this command runs the pipeline itself (the same chunked consistent reads
  merged into the stream, Kafka or the sinks), until the tables are done, and leaves the checkpoint
  where `cdc run` continues.
- ``--sink NAME``: only that sink is filled (a sink added to an existing pipeline); the other sinks
  and the Kafka topics receive nothing.
Exit 0 when every table is bootstrapped, 2 on an error or a table refused (e.g. no primary key).
"""

from __future__ import annotations

import fnmatch
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import click

from cdc.cli_options import CONFIG_OPTION, load_or_exit
from cdc.config import PipelineConfig
from cdc.config.models import PostgresSourceConfig
from cdc.core.errors import ConfigError, HeadwaterError
from cdc.core.events import RowImage
from cdc.core.schemas import TableRef
from snapshotter.progress_view import ProgressView
from snapshotter.state import SnapshotState

if TYPE_CHECKING:
    from cdc.daemon.postgresql_source import PostgresSource

__all__ = ["bootstrap"]


def _captured(config: PipelineConfig) -> tuple[TableRef, ...]:
    if config.any_source.type == "postgresql":
        return tuple(TableRef(*name.split(".", 1)) for name in _pg_source(config).tables())
    from cdc.daemon.mariadb_source import connection_settings
    from cdc.sources.mariadb.server_position import captured_tables

    names = captured_tables(
        connection_settings(config.source), tuple(config.source.tables), tuple(config.source.exclude_tables)
    )
    return tuple(TableRef(*name.split(".", 1)) for name in names)


def _resolve(patterns: tuple[str, ...], captured: tuple[TableRef, ...]) -> tuple[TableRef, ...]:
    chosen: list[TableRef] = []
    for pattern in patterns:
        if "." not in pattern:
            raise ConfigError(
                f"{pattern!r}: name a table as database.table (patterns like 'wiki.*' work too)"
            )
        matched = [t for t in captured if fnmatch.fnmatchcase(str(t), pattern)]
        if not matched:
            raise ConfigError(
                f"{pattern!r} names no table this pipeline captures (source.tables / exclude_tables "
                f"select {len(captured)} tables)"
            )
        chosen.extend(t for t in matched if t not in chosen)
    return tuple(chosen)


def _pg_source(config: PipelineConfig) -> PostgresSource:
    from cdc.daemon.postgresql_source import PostgresSource
    from cdc.sources.postgresql.reader import Acks

    source = config.any_source
    assert isinstance(source, PostgresSourceConfig)
    return PostgresSource(source, config.name, blocking=False, acks=Acks())


def _row_estimates(config: PipelineConfig, tables: tuple[TableRef, ...]) -> dict[TableRef, int]:
    source = config.any_source
    if isinstance(source, PostgresSourceConfig):
        from cdc.catalog.collect import _pg_estimates  # pg_class.reltuples, as `cdc catalog` shows

        found = _pg_estimates(source, list(tables), [])
        return {t: found[str(t)] for t in tables if str(t) in found}
    from cdc.sources.mariadb.source_config import connection_settings, table_row_estimates

    return table_row_estimates(connection_settings(config.source), tables)


def _committed_state(config: PipelineConfig) -> SnapshotState:
    if config.stream is None:
        from cdc.daemon.snapshots import StateFile

        return SnapshotState.parse(StateFile(config.state_dir, config.name).read())
    from cdc.stream.checkpoints import read_checkpoint

    checkpoint = read_checkpoint(config.stream, config.name)
    return SnapshotState.parse(None if checkpoint is None else checkpoint.snapshot)


@click.command()
@CONFIG_OPTION
@click.argument("tables", nargs=-1, required=True)
@click.option(
    "--sink", "sink_name", default=None, help="Fill only this sink (by name), added to the pipeline later."
)
@click.option(
    "--replace",
    is_flag=True,
    help="Empty each table's copies first (a truncate before the first chunk), so that rows deleted "
    "while a copy was not kept up go too.",
)
@click.option("--no-wait", is_flag=True, help="With a daemon running: hand the request over and return.")
def bootstrap(
    config_path: Path, tables: tuple[str, ...], sink_name: str | None, replace: bool, no_wait: bool
) -> None:
    """Copy the existing rows of TABLE... (database.table, patterns allowed) into the pipeline's
    copies, consistently and without locking the source, handed over to the stream with no gap and
    no duplicate."""
    config = load_or_exit(config_path)
    try:
        chosen = _resolve(tables, _captured(config))
        if sink_name is not None:
            sys.exit(_fill_sink(config, sink_name, chosen, replace))
        sys.exit(_bootstrap(config, chosen, replace, no_wait))
    except HeadwaterError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


def _bootstrap(config: PipelineConfig, tables: tuple[TableRef, ...], replace: bool, no_wait: bool) -> int:
    from cdc.daemon.run_lock import RunLock
    from snapshotter.requests import RequestBox

    if config.stream is None and not config.sinks:
        raise ConfigError("embedded mode (no `stream`) needs at least one entry in `sinks`")
    lock = RunLock(config.state_dir, config.name)
    box = RequestBox(config.state_dir, config.name)
    view = ProgressView(_row_estimates(config, tables), sys.stderr.isatty())
    names = ", ".join(str(t) for t in tables)
    running = not lock.acquire()
    try:
        # tables a killed or still running bootstrap holds are taken up where it stopped
        committed = _committed_state(config)
        done = {f.request for f in committed.finished} - {j.request for j in committed.jobs}
        for finished in (r for r in box.pending() if r.id in done):
            # finished and committed: its file waited for a running daemon to tidy it up (a direct
            # bootstrap stops first). Taken for unfinished, it made the next `cdc bootstrap` of the
            # same table "resume" it and do nothing, --replace included.
            box.remove(finished.id)
        unfinished = {t: r.id for r in box.pending() for t in r.tables}
        unfinished.update({j.table: j.request for j in committed.jobs})
        resumed = {unfinished[t] for t in tables if t in unfinished}
        if len(resumed) == 1 and all(t in unfinished for t in tables):
            request_id = resumed.pop()
            click.echo(f"bootstrap {request_id}: resuming after its last committed chunk: {names}")
            if replace:
                click.echo(
                    "note: --replace applies to a new bootstrap, not to one resumed: run the command"
                    " again with --replace once this one has finished",
                    err=True,
                )
        else:
            request_id = box.submit(tables, replace=replace).id
            where = (
                f"handed to the running `cdc run` (pid {lock.holder()})"
                if running
                else "no `cdc run` is running, bootstrapping here"
            )
            click.echo(f"bootstrap {request_id} of pipeline {config.name!r}: {where}: {names}")
        if running:
            if no_wait:
                return 0
            return _follow(config, request_id, tables, view)
        return _direct(config, request_id, view)
    finally:
        lock.release()


def repair_through_stream(config: PipelineConfig, keys: Mapping[TableRef, tuple[RowImage, ...]]) -> int:
    """Send the source's current rows for ``keys`` (and deletes for keys it does not have) through
    the pipeline's normal path, so that every sink and Kafka consumer receives them: through the
    running `cdc run` if there is one, else by running the pipeline here until they are out.

    Keys are values as the snapshot reader gives them (the binlog decoder's types). The events say
    ``source.snapshot: "repair"``. Returns 0 once the daemon has committed them, 2 on an error.
    """
    from cdc.daemon.run_lock import RunLock
    from snapshotter.requests import RequestBox

    tables = tuple(t for t, k in keys.items() if k)
    if not tables:
        return 0
    lock = RunLock(config.state_dir, config.name)
    running = not lock.acquire()
    try:
        request = RequestBox(config.state_dir, config.name).submit(tables, keys={t: keys[t] for t in tables})
        count = sum(len(keys[t]) for t in tables)
        where = f"the running `cdc run` (pid {lock.holder()})" if running else "the stream, run here"
        click.echo(f"repair {request.id}: {count} keys in {len(tables)} tables, through {where}", err=True)
        view = ProgressView({}, False, what="repair")
        if running:
            return _follow(config, request.id, tables, view)
        return _direct(config, request.id, view)
    finally:
        lock.release()


def _follow(config: PipelineConfig, request: str, tables: tuple[TableRef, ...], view: ProgressView) -> int:
    """Wait for the daemon to commit the request's last chunk, showing the committed progress."""
    while True:
        state = _committed_state(config)
        view.show(state, request)
        mine = [j for j in state.jobs if j.request == request]
        done = [f for f in state.finished if f.request == request]
        if not mine and {f.table for f in done} >= set(tables):
            return view.finish(done)
        time.sleep(1.0)


def _direct(config: PipelineConfig, request: str, view: ProgressView) -> int:
    """Run the pipeline here (stream and chunks) until no bootstrap is left, then stop."""
    from cdc.daemon.snapshots import snapshots_for

    stopper: list[Callable[[], None]] = []

    def when_done() -> None:
        for stop in stopper:
            stop()

    snapshots = snapshots_for(config, when_done=when_done)
    daemon: _Daemon
    if config.any_source.type == "postgresql":
        from cdc.daemon.postgresql_source import postgresql_capture, postgresql_embedded
        from cdc.policy import column_policies

        if config.stream is None:
            daemon = postgresql_embedded(config, until_caught_up=False, recorder=None, snapshots=snapshots)
        else:
            policies = column_policies(config.policies)
            daemon = postgresql_capture(config, until_caught_up=False, policies=policies, snapshots=snapshots)
    elif config.stream is None:
        from cdc.daemon.embedded_wiring import embedded_daemon

        daemon = embedded_daemon(config, until_caught_up=False, snapshots=snapshots)
    else:
        from cdc.daemon.capture import CaptureDaemon, CaptureOptions
        from cdc.daemon.mariadb_source import MariaDbSource
        from cdc.policy import column_policies
        from cdc.stream import KafkaStreamWriter

        stream = config.stream
        daemon = CaptureDaemon(
            lambda: KafkaStreamWriter(stream, config.name, config.source.server_id),
            lambda: MariaDbSource(config.source, blocking=True),
            CaptureOptions(flush_max_events=stream.flush_max_events, flush_max_ms=stream.flush_max_ms),
            snapshots,
            column_policies(config.policies),
        )
    stopper.append(daemon.request_stop)
    ticker = threading.Event()

    def show() -> None:
        while not ticker.wait(1.0):
            if snapshots.pump is not None:
                view.show(snapshots.pump.state, request)

    thread = threading.Thread(target=show, name="bootstrap-progress", daemon=True)
    thread.start()
    try:
        code = daemon.run()
    finally:
        ticker.set()
        thread.join(timeout=2)
    if code != 0:
        return code
    state = _committed_state(config)
    left = [j for j in state.jobs if j.request == request]
    if left:
        click.echo(f"error: the bootstrap stopped before {left[0].table} was done; run it again", err=True)
        return 2
    return view.finish([f for f in state.finished if f.request == request])


class _Daemon(Protocol):
    def run(self) -> int: ...
    def request_stop(self) -> None: ...


def _fill_sink(config: PipelineConfig, sink_name: str, tables: tuple[TableRef, ...], replace: bool) -> int:
    from cdc.daemon.run_lock import RunLock

    if sink_name not in config.sink_names:
        raise ConfigError(f"--sink {sink_name!r}: the config's sinks are {', '.join(config.sink_names)}")
    if config.stream is None:
        lock = RunLock(config.state_dir, config.name)
        if not lock.acquire():
            raise ConfigError(
                f"`cdc run` of pipeline {config.name!r} is running (pid {lock.holder()}): stop it before "
                f"filling sink {sink_name!r} (it would not feed that sink meanwhile); start it again after"
            )
        lock.release()
    from snapshotter.sink_fill import fill_sink

    result = fill_sink(config, sink_name, tables, replace=replace, progress=None)
    click.echo(str(result))
    return 0
