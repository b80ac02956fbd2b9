"""`cdc schema pending|accept`: the table shape changes sinks hold back, and letting one through.

A sink holds a change back under ``schema_changes: stop`` (every change), and under ``apply`` for
changes it cannot make safely on its own (a type change to another family, a primary-key change): it
stops with an error naming the table and the change, and records it in its own storage. `cdc schema
accept` marks it accepted there; the next `cdc run` / `cdc sink` applies it. Works with any sink that
implements ``sinks.contract.AcceptsSchemaChanges``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from cdc.cli_options import CONFIG_OPTION
from cdc.config import PipelineConfig
from cdc.core.errors import HeadwaterError
from cdc.core.schemas import TableRef
from sinks.contract import AcceptsSchemaChanges, Sink

__all__ = ["schema"]


@click.group()
def schema() -> None:
    """Table shape changes that sinks hold back (schema_changes: stop, or a change not safe to apply)."""


@contextmanager
def _sinks(
    config: PipelineConfig, only: str | None
) -> Iterator[list[tuple[int, Sink, AcceptsSchemaChanges]]]:
    """The config's sinks that keep pending changes, opened; ``only``: a sink's index or name."""
    from sinks.registry import open_sink
    from sinks.table_selection import unwrap

    chosen: list[tuple[int, Sink, AcceptsSchemaChanges]] = []
    opened: list[Sink] = []
    try:
        for index, sink_config in enumerate(config.sinks):
            sink = open_sink(sink_config, config.name)
            if only is not None and only not in (str(index), sink.name, sink_config.type):
                continue
            inner = unwrap(sink)
            if not isinstance(inner, AcceptsSchemaChanges):
                continue
            sink.open()
            opened.append(sink)
            chosen.append((index, sink, inner))
        if only is not None and not chosen:
            names = ", ".join(f"{i} ({s.type})" for i, s in enumerate(config.sinks))
            raise click.UsageError(f"--sink {only!r} names no sink that keeps schema changes; sinks: {names}")
        yield chosen
    finally:
        for sink in opened:
            sink.close()


def _table_ref(text: str) -> TableRef:
    db, dot, table = text.partition(".")
    if not dot or not db or not table:
        raise click.BadParameter(f"expected db.table, got {text!r}", param_hint="TABLE")
    return TableRef(db, table)


@schema.command()
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def pending(config_path: Path, as_json: bool) -> None:
    """List the changes each sink holds back. Exit 0 (none), 1 (some pending), 2 (error)."""
    from cdc.cli_options import load_or_exit

    config = load_or_exit(config_path)
    found: list[dict[str, object]] = []
    try:
        with _sinks(config, None) as sinks:
            for index, sink, inner in sinks:
                for change in inner.pending_schema_changes():
                    found.append(
                        {
                            "sink": index,
                            "sink_name": sink.name,
                            "table": str(change.table),
                            "change": change.change,
                            "from_version": change.from_version,
                            "to_version": change.to_version,
                            "position": change.position.to_string(),
                        }
                    )
    except HeadwaterError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(found, indent=2))
    elif not found:
        click.echo("no schema change pending")
    else:
        for item in found:
            click.echo(
                f"sink {item['sink']} ({item['sink_name']}): {item['table']}: {item['change']} "
                f"(first row at {item['position']}); accept with "
                f"`cdc schema accept -c {config_path} {item['table']} --sink {item['sink']}`"
            )
    sys.exit(1 if found else 0)


def _accept_held_by_policy(config: PipelineConfig, ref: TableRef) -> int:
    """A change `cdc run` stopped on for the table's ``compatibility`` policy (cdc.daemon.schema_guard)."""
    from cdc.daemon.schema_guard import accept_held_change

    held = accept_held_change(config, ref)
    if held is None:
        return 0
    click.echo(
        f"cdc run: accepted {ref}: {held.change} (breaks its compatibility policy); the next run applies it"
    )
    return 1


@schema.command()
@CONFIG_OPTION
@click.argument("table")
@click.option("--sink", "sink_name", default=None, help="Only this sink: its index in `sinks`, or its name.")
def accept(config_path: Path, table: str, sink_name: str | None) -> None:
    """Let the pending change of TABLE (db.table) through at the next run.

    Exit 0 when a pending change was accepted, 1 when none was pending, 2 on an error.
    """
    from cdc.cli_options import load_or_exit

    config = load_or_exit(config_path)
    ref = _table_ref(table)
    accepted = 0
    try:
        with _sinks(config, sink_name) as sinks:
            for index, sink, inner in sinks:
                change = inner.accept_schema_change(ref)
                if change is not None:
                    accepted += 1
                    click.echo(
                        f"sink {index} ({sink.name}): accepted {ref}: {change.change}; "
                        "the next run applies it"
                    )
    except HeadwaterError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    accepted += _accept_held_by_policy(config, ref)
    if not accepted:
        click.echo(f"no schema change of {ref} is pending" + (f" on sink {sink_name}" if sink_name else ""))
        sys.exit(1)
