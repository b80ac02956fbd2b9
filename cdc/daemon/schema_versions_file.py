"""``<state_dir>/<pipeline>.schema-versions.jsonl``: each table version the daemon let through, in order.

One JSON object per line, appended (and fsynced) when `cdc run` first reads a row of a new table
version: table, version, columns, primary key, the position of that first row, when, and the change
from the previous version with its compatibility class. Lines of kind ``held`` record a change the
``compatibility`` policy stopped on; ``accepted`` lines are `cdc schema accept` letting one through.
`cdc catalog` reads the file for embedded pipelines (Kafka pipelines have the ``__schema`` topic).
A torn last line (a crash mid-append) is ignored.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cdc.core.schemas import Column, TableRef, TableSchema

__all__ = ["SchemaVersionsFile", "VersionEntry"]


@dataclass(frozen=True, slots=True)
class VersionEntry:
    kind: str  # "version" (let through), "held" (stopped on), "accepted"
    table: str  # db.table
    version: str
    columns: tuple[Column, ...] = ()
    primary_key: tuple[str, ...] = ()
    position: str = ""  # of the first row of this version the daemon read
    at: str = ""
    from_version: str | None = None
    change: str = ""  # SchemaDiff.describe()
    compatibility: str = ""  # "backward" | "breaking" | "" (a table's first version)
    breaking: str = ""  # the breaking parts and why

    def schema(self) -> TableSchema:
        db, _, table = self.table.partition(".")
        return TableSchema(TableRef(db, table), self.columns, self.primary_key, self.version)

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": self.kind,
                "table": self.table,
                "version": self.version,
                "columns": [c.to_row() for c in self.columns],
                "primary_key": list(self.primary_key),
                "position": self.position,
                "at": self.at,
                "from_version": self.from_version,
                "change": self.change,
                "compatibility": self.compatibility,
                "breaking": self.breaking,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> VersionEntry:
        raw = json.loads(text)
        return cls(
            raw["kind"],
            raw["table"],
            raw["version"],
            tuple(Column.from_row(r) for r in raw.get("columns", [])),
            tuple(raw.get("primary_key", [])),
            raw.get("position", ""),
            raw.get("at", ""),
            raw.get("from_version"),
            raw.get("change", ""),
            raw.get("compatibility", ""),
            raw.get("breaking", ""),
        )


class SchemaVersionsFile:
    def __init__(self, state_dir: Path, pipeline: str) -> None:
        self.path = state_dir / f"{pipeline}.schema-versions.jsonl"

    def read(self) -> list[VersionEntry]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out: list[VersionEntry] = []
        for line in lines:
            try:
                out.append(VersionEntry.from_json(line))
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line
        return out

    def append(self, entry: VersionEntry) -> None:
        if not entry.at:
            entry = _with_now(entry)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(entry.to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())


def _with_now(entry: VersionEntry) -> VersionEntry:
    from dataclasses import replace

    return replace(entry, at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
