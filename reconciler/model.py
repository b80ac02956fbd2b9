"""The reconciler's values: what is compared, what was found, and what a repair would re-send."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cdc.core.schemas import ArrowKind, TableRef

__all__ = [
    "MASKED",
    "CompareColumn",
    "CopyResult",
    "DriftKind",
    "KeyRange",
    "RepairPlan",
    "RowDrift",
    "TablePlan",
    "ValuePolicy",
    "Verdict",
]


class DriftKind(enum.StrEnum):
    MISSING = "missing"  # in the source, not in the copy
    EXTRA = "extra"  # in the copy, not in the source
    DIFFERENT = "different"  # in both, with columns that differ


class Verdict(enum.StrEnum):
    MATCH = "match"
    DRIFT = "drift"  # differences that persisted after the copy passed the source's position
    BEHIND = "behind"  # differences, but the copy never reached the source's position in the wait
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class ValuePolicy:
    """A column policy (docs/governance.md) applied to the source's values, so that they compare with
    what the copies hold: the daemon's own function, run on the value read from the source."""

    name: str  # "hash", "redact", "truncate 20", "text replace"
    source_kind: ArrowKind  # the source column's kind: how its raw value is read
    apply: Callable[[Any], Any]
    masked: bool  # protected values: no report shows them, from either side


MASKED = "[masked]"  # what reports show for a value of a masked column


@dataclass(frozen=True, slots=True)
class CompareColumn:
    """A source column as the canonical form needs it: its kind and, for decimals, the scale."""

    name: str
    kind: ArrowKind
    scale: int = 0
    precision: int = 0
    # the source says NOT NULL: the row text skips the NULL marker (a NULL in a copy still shows:
    # its text, hash and sum become NULL there)
    nullable: bool = True
    # source side only: a policy whose function turns the source's value into the copies' (``kind``
    # is then the kind of the copies' values); the store reads such columns raw and applies it
    policy: ValuePolicy | None = None
    # MariaDB source side only: a text column stored as UTF-8 (utf8mb4, utf8mb3), whose bytes the
    # digest text reads as they are, without a CONVERT per row (a copy's column may be held in
    # another character set: copies never carry it)
    utf8: bool = False


@dataclass(frozen=True, slots=True)
class KeyRange:
    """Half-open ``[lo, hi)`` over a single integer key (the bucketed fast path)."""

    lo: int
    hi: int


@dataclass(frozen=True, slots=True)
class RowDrift:
    kind: DriftKind
    key: tuple[str, ...]  # canonical text of each key column
    columns: tuple[str, ...] = ()  # DIFFERENT: the columns that differ
    # canonical values (source, copy) of the differing columns; shown to data owners
    values: tuple[tuple[str | None, str | None], ...] = ()


@dataclass(frozen=True, slots=True)
class CopyResult:
    """One source table against one copy."""

    table: TableRef
    sink: str  # the sink's name in the config
    target: str  # where the copy lives (table name, or Iceberg identifier)
    verdict: Verdict
    rows_source: int
    rows_copy: int
    drift: tuple[RowDrift, ...]
    seconds: float
    source_position: str  # the source's binlog point the last re-check was paired with
    copy_position: str  # the copy's applied position at that re-check
    columns_compared: tuple[str, ...]
    columns_not_in_copy: tuple[str, ...] = ()
    message: str = ""  # ERROR / BEHIND: why

    def count(self, kind: DriftKind) -> int:
        return sum(1 for d in self.drift if d.kind is kind)


@dataclass(frozen=True, slots=True)
class TablePlan:
    """What a repair of one copy of one table would re-send through the stream."""

    table: TableRef
    sink: str
    upsert_keys: tuple[tuple[str, ...], ...]  # source rows to send again (missing and different)
    delete_keys: tuple[tuple[str, ...], ...]  # keys the copy has and the source does not


@dataclass(frozen=True, slots=True)
class RepairPlan:
    """The seam for ``--repair``: per table and copy, the keys to re-send (read from the source)."""

    tables: tuple[TablePlan, ...] = field(default_factory=tuple)

    @classmethod
    def of(cls, results: tuple[CopyResult, ...]) -> RepairPlan:
        plans = []
        for r in results:
            if r.verdict is not Verdict.DRIFT:
                continue
            upsert = tuple(d.key for d in r.drift if d.kind is not DriftKind.EXTRA)
            delete = tuple(d.key for d in r.drift if d.kind is DriftKind.EXTRA)
            plans.append(TablePlan(r.table, r.sink, upsert, delete))
        return cls(tuple(plans))

    def describe(self) -> str:
        if not self.tables:
            return "repair plan: nothing to re-send"
        lines = ["repair plan (dry run; nothing was sent):"]
        for p in self.tables:
            lines.append(
                f"  {p.table} -> sink {p.sink}: re-send {len(p.upsert_keys)} source row(s), "
                f"delete {len(p.delete_keys)} key(s)"
            )
            for key in p.upsert_keys[:10]:
                lines.append(f"    upsert {list(key)}")
            for key in p.delete_keys[:10]:
                lines.append(f"    delete {list(key)}")
        return "\n".join(lines)
