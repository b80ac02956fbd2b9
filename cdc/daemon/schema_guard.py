"""The ``compatibility`` policy at the source: every new table version is classified before it is sent.

Runs on the reader's side of `cdc run` (it wraps the binlog records), so a change that breaks a
table's ``compatibility: backward`` stops the daemon (``on_incompatible: stop``, the default) before
any row of the new version reaches Kafka or a sink: the open transaction is aborted, nothing after
the last checkpoint was written, and the next start reads the change again. `cdc schema accept`
records an acceptance in the versions file; the next run lets that version through. With
``on_incompatible: flag`` the change is logged (WARNING) and marked in `cdc catalog` instead.

Cheap on the hot path: one identity check of the row's schema object against the previous row's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import replace

from cdc.catalog.metadata import table_product
from cdc.config.models import Compatibility, OnIncompatible, PipelineConfig
from cdc.core.errors import TerminalError
from cdc.core.events import ChangeEvent, SourceRecord
from cdc.core.positions import Position
from cdc.core.schema_compatibility import classify_diff
from cdc.core.schema_evolution import diff_schemas
from cdc.core.schemas import TableRef, TableSchema
from cdc.daemon.schema_versions_file import SchemaVersionsFile, VersionEntry

__all__ = ["IncompatibleSchemaChange", "SchemaGuard", "accept_held_change", "guarded"]

log = logging.getLogger(__name__)


class IncompatibleSchemaChange(TerminalError):
    """A table's new version breaks its ``compatibility`` policy and ``on_incompatible`` is stop."""


class SchemaGuard:
    def __init__(self, config: PipelineConfig, config_hint: str = "CONFIG") -> None:
        self._config = config
        self._hint = config_hint
        self._file = SchemaVersionsFile(config.state_dir, config.name)
        self._latest: dict[str, VersionEntry] = {}
        self._first_seen: dict[tuple[str, str], Position] = {}
        self._accepted: set[tuple[str, str]] = set()
        for entry in self._file.read():
            key = (entry.table, entry.version)
            if entry.kind == "version":
                self._latest[entry.table] = entry
                if entry.position and key not in self._first_seen:
                    self._first_seen[key] = Position.parse(entry.position)
            elif entry.kind == "accepted":
                self._accepted.add(key)
        self._current: dict[TableRef, str] = {t.ref: e.version for t, e in self._schemas()}

    def _schemas(self) -> list[tuple[TableSchema, VersionEntry]]:
        return [(e.schema(), e) for e in self._latest.values()]

    def __call__(self, records: Iterator[SourceRecord]) -> Iterator[SourceRecord]:
        last: TableSchema | None = None
        current = self._current
        for record in records:
            if record.__class__ is ChangeEvent:
                schema = record.schema
                if schema is not last:
                    if current.get(schema.ref) != schema.version:
                        self._new_version(schema, record.position)
                        current[schema.ref] = schema.version
                    last = schema
            yield record

    def _new_version(self, schema: TableSchema, position: Position) -> None:
        name = str(schema.ref)
        previous = self._latest.get(name)
        first = self._first_seen.get((name, schema.version))
        if previous is not None and previous.version == schema.version:
            return  # back at the latest version after rows re-read from before it
        if previous is not None and first is not None:
            latest_first = self._first_seen.get((name, previous.version))
            if latest_first is not None and position < latest_first:
                return  # re-read after a restart: rows from before the latest version began
        if previous is None:
            self._record(
                VersionEntry(
                    "version", name, schema.version, schema.columns, schema.primary_key, position.to_string()
                ),
                position,
            )
            return
        diff = diff_schemas(previous.schema(), schema)
        verdict = classify_diff(diff)
        product = table_product(self._config.catalog, schema.db, schema.table)
        entry = VersionEntry(
            "version",
            name,
            schema.version,
            schema.columns,
            schema.primary_key,
            position.to_string(),
            from_version=previous.version,
            change=diff.describe(),
            compatibility=verdict.label,
            breaking=verdict.describe_breaking(),
        )
        breaks = not verdict.backward and product.compatibility is Compatibility.BACKWARD
        if breaks and product.on_incompatible is OnIncompatible.STOP:
            if (name, schema.version) not in self._accepted:
                self._file.append(replace(entry, kind="held"))
                raise IncompatibleSchemaChange(
                    f"{name}: the change at position {position.to_string()} breaks its compatibility "
                    f"policy (backward): {verdict.describe_breaking()}. Nothing of it was written. "
                    f"Let it through with `cdc schema accept -c {self._hint} {name}` and restart, or "
                    "set catalog.tables.<pattern>.on_incompatible: flag"
                )
            log.warning("%s: accepted breaking change let through: %s", name, diff.describe())
        elif breaks:
            log.warning(
                "%s: schema change breaks its compatibility policy (backward), let through "
                "(on_incompatible: flag): %s",
                name,
                verdict.describe_breaking(),
            )
        else:
            log.info("%s: schema change (%s): %s", name, verdict.label, diff.describe())
        self._record(entry, position)

    def _record(self, entry: VersionEntry, position: Position) -> None:
        self._file.append(entry)
        self._latest[entry.table] = entry
        self._first_seen.setdefault((entry.table, entry.version), position)


def accept_held_change(config: PipelineConfig, ref: TableRef) -> VersionEntry | None:
    """`cdc schema accept`: let the change the guard last held for ``ref`` through; None if none held."""
    file = SchemaVersionsFile(config.state_dir, config.name)
    entries = file.read()
    name = str(ref)
    held = next((e for e in reversed(entries) if e.table == name and e.kind == "held"), None)
    if held is None:
        return None
    done = {(e.table, e.version) for e in entries if e.kind in ("accepted", "version")}
    if (name, held.version) in done:
        return None
    file.append(VersionEntry("accepted", name, held.version, change=held.change))
    return held


def guarded(config: PipelineConfig) -> Callable[[Iterator[SourceRecord]], Iterator[SourceRecord]]:
    """For MariaDbSource: each reading of the binlog gets a guard fresh from the versions file."""

    def guard(records: Iterator[SourceRecord]) -> Iterator[SourceRecord]:
        return SchemaGuard(config)(records)

    return guard
