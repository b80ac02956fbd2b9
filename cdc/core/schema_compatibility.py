"""Whether a table shape change is backward compatible, as a schema registry would judge it.

Backward compatible: a consumer that reads with the new version still reads every row written with
the old one, and a consumer's copy keeps its meaning. Wikimedia's event platform allows only such
changes; Confluent's registry calls the same idea BACKWARD for its readers. Here, per change that
:func:`cdc.core.schema_evolution.diff_schemas` describes:

- adding a nullable column: backward (old rows read as null);
- adding a NOT NULL column: breaking (the binlog carries no column defaults, so old rows have no
  value a consumer may rely on);
- dropping or renaming a column, changing the primary key: breaking;
- a type change that widens (every old value fits the new type: a wider integer, float to double,
  more decimal digits on both sides of the point, a longer string, more enum members, NOT NULL to
  nullable): backward; anything else (narrowing, another family): breaking.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cdc.core.schema_evolution import SchemaDiff
from cdc.core.schemas import INTEGER_RANGES, ArrowKind, Column

__all__ = ["ClassifiedChange", "SchemaCompatibility", "classify_diff"]

_LENGTH = re.compile(r"^\w+\((\d+)\)")
# the byte limits of the unsized string types
_TEXT_BYTES = {"tinytext": 255, "tinyblob": 255, "text": 65_535, "blob": 65_535}
_TEXT_BYTES |= {"mediumtext": 16_777_215, "mediumblob": 16_777_215}
_FLOAT_EXACT = {ArrowKind.INT8, ArrowKind.INT16, ArrowKind.INT32, ArrowKind.UINT8, ArrowKind.UINT16}
_FLOAT_EXACT |= {ArrowKind.UINT32, ArrowKind.FLOAT32}


@dataclass(frozen=True, slots=True)
class ClassifiedChange:
    change: str  # as SchemaDiff.describe spells it: "add note varchar(20)", "drop title"
    backward: bool
    reason: str  # why, for the log and the catalog


@dataclass(frozen=True, slots=True)
class SchemaCompatibility:
    changes: tuple[ClassifiedChange, ...]

    @property
    def backward(self) -> bool:
        return all(c.backward for c in self.changes)

    @property
    def label(self) -> str:
        """ "backward" or "breaking", for the catalog."""
        return "backward" if self.backward else "breaking"

    @property
    def breaking(self) -> tuple[ClassifiedChange, ...]:
        return tuple(c for c in self.changes if not c.backward)

    def describe_breaking(self) -> str:
        return "; ".join(f"{c.change} ({c.reason})" for c in self.breaking)


def classify_diff(diff: SchemaDiff) -> SchemaCompatibility:
    out: list[ClassifiedChange] = []
    for c in diff.added:
        name = f"add {c.name} {c.source_type}"
        if c.nullable:
            out.append(ClassifiedChange(name, True, "a nullable column: older rows read as null"))
        else:
            out.append(ClassifiedChange(name, False, "a NOT NULL column that older rows lack"))
    for c in diff.dropped:
        out.append(ClassifiedChange(f"drop {c.name}", False, "consumers lose a column they may read"))
    for old, new in diff.renamed:
        out.append(ClassifiedChange(f"rename {old.name} to {new.name}", False, "consumers read the old name"))
    for old, new in diff.retyped:
        name = f"change {old.name} from {_spell(old)} to {_spell(new)}"
        widens, reason = _widens(old, new)
        out.append(ClassifiedChange(name, widens, reason))
    if diff.key_changed:
        out.append(ClassifiedChange("primary key changed", False, "message keys and upserts change"))
    return SchemaCompatibility(tuple(out))


def _spell(column: Column) -> str:
    return column.source_type + ("" if column.nullable else " not null")


def _widens(old: Column, new: Column) -> tuple[bool, str]:
    if old.nullable and not new.nullable:
        return False, "older rows may hold null"
    a, b = old.arrow_type, new.arrow_type
    if a.kind in INTEGER_RANGES and b.kind in INTEGER_RANGES:
        (lo, hi), (nlo, nhi) = INTEGER_RANGES[a.kind], INTEGER_RANGES[b.kind]
        if nlo <= lo and hi <= nhi:
            return True, "a wider integer"
        return False, "narrows the integer range"
    if b.kind is ArrowKind.FLOAT64 and a.kind in _FLOAT_EXACT:
        return True, "every old value is exact as a double"
    if a.kind is ArrowKind.DECIMAL and b.kind is ArrowKind.DECIMAL:
        if b.scale >= a.scale and b.precision - b.scale >= a.precision - a.scale:
            return True, "more decimal digits"
        return False, "fewer decimal digits"
    if a.kind is not b.kind:
        return False, f"another type ({a} to {b})"
    if a.kind in (ArrowKind.STRING, ArrowKind.BINARY):
        return _string_widens(old.source_type.lower(), new.source_type.lower())
    return True, "same type" if old.source_type == new.source_type else "same type, finer precision"


def _string_widens(old: str, new: str) -> tuple[bool, str]:
    if old.startswith(("enum(", "set(")) or new.startswith(("enum(", "set(")):
        if _members(old) <= _members(new) and old.split("(")[0] == new.split("(")[0]:
            return True, "more members"
        return False, "members removed"
    old_len, new_len = _length(old), _length(new)
    if new_len < old_len:
        return False, "a shorter string"
    return True, "a longer string" if new_len > old_len else "same length"


def _length(source_type: str) -> int:
    match = _LENGTH.match(source_type)
    if match:
        return int(match.group(1))
    return _TEXT_BYTES.get(source_type.split()[0], 4_294_967_295)  # longtext, json


def _members(source_type: str) -> frozenset[str]:
    inner = source_type[source_type.find("(") + 1 : source_type.rfind(")")]
    return frozenset(re.findall(r"'((?:[^']|'')*)'", inner))
