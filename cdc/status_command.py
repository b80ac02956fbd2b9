"""`cdc status`: the source's position, each sink's applied position and lag, bootstraps,
reconciliations, the daemons' last runs, and a verdict a monitoring check can use (cdc/daemon/status.py
gathers them; this prints them)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cdc.cli_options import CONFIG_OPTION, load_or_exit
from cdc.logs import redact as _mask

if TYPE_CHECKING:
    from cdc.daemon.status import PipelineStatus

__all__ = ["status"]


@click.command()
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--max-lag-seconds",
    type=float,
    default=None,
    help="Exit 1 when a sink is more than this many seconds behind the source.",
)
def status(config_path: Path, as_json: bool, max_lag_seconds: float | None) -> None:
    """The source's position, each sink's applied position and lag, the daemons' last runs.

    Exit codes, for a monitoring check: 0 healthy; 1 a sink is more than --max-lag-seconds behind,
    a sink cannot be read, or the last `cdc run` / `cdc sink` stopped on an error (exit 2);
    2 status itself could not run (a bad config, the source or the Kafka checkpoint unreadable).
    """
    config = load_or_exit(config_path)
    from cdc.daemon.status import pipeline_status

    root = logging.getLogger()
    if root.level == logging.INFO:  # the sinks' "opened" lines are noise here; --log-level DEBUG shows them
        root.setLevel(logging.WARNING)
    st = pipeline_status(config)
    code, problems = st.problems(max_lag_seconds)
    if as_json:
        click.echo(_mask(json.dumps(st.to_json(max_lag_seconds), indent=2)))
        sys.exit(code)
    pos = st.source_position
    click.echo(f"pipeline    {st.name} ({st.mode})")
    if pos is not None:
        click.echo(f"source      {st.source} at {pos.file}:{pos.offset}, GTID {pos.gtid_state or '-'}")
    elif st.pg is not None:
        from cdc.daemon.status_pg import format_lsn

        slot = st.pg.slot
        click.echo(f"source      postgresql {st.source} at WAL {st.source_lsn}")
        if slot.exists:
            state = "invalidated" if slot.lost else "active" if slot.active else "idle"
            flushed = format_lsn(slot.confirmed_flush_lsn)
            slot_behind = st.pg.slot_bytes_behind
            click.echo(
                f"slot        {slot.name} ({state}): confirmed_flush_lsn {flushed},"
                f" {slot_behind} WAL bytes behind"
            )
        else:
            click.echo(f"slot        {slot.name}: does not exist")
    else:
        click.echo(f"source      {st.source}: {_mask(st.source_error or 'unknown')}")
    if st.mode == "kafka":
        if st.checkpoint is not None:
            click.echo(f"checkpoint  {st.checkpoint.restart}")
            click.echo(
                f"            GTID {st.checkpoint.gtid}, committed at {st.checkpoint.committed_at}"
                f"{_ago(st.checkpoint.committed_at)}"
            )
        else:
            click.echo(
                f"checkpoint  none ({_mask(st.checkpoint_error or 'the daemon has not committed yet')})"
            )
        unit = "WAL" if st.pg is not None else "binlog"
        lag = "-" if st.lag_bytes is None else f"{st.lag_bytes} {unit} bytes behind"
        click.echo(f"lag         {lag}")
    for s in st.sinks:
        if s.error is not None:
            click.echo(f"sink        {s.name}: cannot be read: {_mask(s.error)}")
            continue
        behind = "-" if s.lag_bytes is None else f"{s.lag_bytes} bytes"
        seconds = "unknown" if s.lag_seconds is None else f"{s.lag_seconds:.0f}s"
        in_kafka = "" if s.offsets_lag is None else f", {s.offsets_lag} messages in Kafka"
        click.echo(f"sink        {s.name} ({s.target}): behind {behind}, {seconds}{in_kafka}")
        click.echo(f"            applied {s.applied or 'nothing yet'}")
    _echo_bootstraps(st)
    for run in st.runs:
        state = f"pid {run.pid} on {run.host}, started {run.started_at}"
        if run.exited and run.last_exit is not None:
            state += f", exited {run.last_exit.exit_code} at {run.last_exit.at}"
        elif run.running is False:
            state += ", not running (no exit recorded: killed?)"
        elif run.running:
            state += ", running"
        click.echo(f"cdc {run.command:<7} {state}")
        if run.last_error:
            click.echo(f"            last error ({run.last_error_at}): {_mask(run.last_error)}")
    more = " ..." if len(st.tables) > 20 else ""
    click.echo(f"tables      {len(st.tables)}: {', '.join(st.tables[:20])}{more}")
    for problem in problems:
        click.echo(f"problem     {_mask(problem)}")
    click.echo(f"health      {('healthy', 'unhealthy', 'status could not run')[code]} (exit {code})")
    sys.exit(code)


def _echo_bootstraps(st: PipelineStatus) -> None:
    state = st.bootstraps
    for index, job in enumerate(state.jobs if state else ()):
        doing = "reading" if index == 0 else "queued"
        click.echo(
            f"bootstrap   {job.table}: {doing}, {job.rows:,} rows in {job.chunks} chunks so far"
            f" (request {job.request}, started {job.started_at})"
        )
    for request in st.bootstrap_requests:
        click.echo(f"bootstrap   request {request} waits for `cdc run` to take it up")
    for done in state.finished[-3:] if state else ():
        what = f"NOT bootstrapped: {done.refused}" if done.refused else f"{done.rows:,} rows"
        click.echo(f"bootstrap   {done.table}: {what} (finished {done.finished_at})")
    for r in st.reconciliations:
        drift = (
            f": {r.missing} missing, {r.extra} extra, {r.different} different" if r.verdict == "drift" else ""
        )
        click.echo(f"reconciled  {r.table} -> {r.sink}: {r.verdict}{drift} (at {r.at})")


def _ago(moment: str | None) -> str:
    if not moment:
        return ""
    ago = dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(moment)
    return f" ({ago.total_seconds():.0f}s ago)"
