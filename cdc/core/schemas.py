"""Table schemas as the rest of Headwater sees them: columns with source and Arrow types, primary key.

The Arrow type is a small frozen value (:class:`ArrowType`) rather than a ``pyarrow.DataType`` so that
the vocabulary stays importable without pyarrow (the capture daemon's hot path never needs it);
:meth:`ArrowType.to_pyarrow` imports pyarrow lazily for the sinks that do.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["INTEGER_RANGES", "ArrowKind", "ArrowType", "Column", "TableRef", "TableSchema"]


class ArrowKind(enum.Enum):
    BOOL = "bool"
    INT8 = "int8"
    INT16 = "int16"
    INT32 = "int32"
    INT64 = "int64"
    UINT8 = "uint8"
    UINT16 = "uint16"
    UINT32 = "uint32"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    DECIMAL = "decimal"  # decimal128 up to precision 38, decimal256 beyond (MariaDB allows 65)
    STRING = "string"
    BINARY = "binary"
    DATE = "date32"
    TIMESTAMP = "timestamp[us]"  # wall-clock, no zone (DATETIME)
    TIMESTAMP_UTC = "timestamp[us, tz=UTC]"  # an instant (TIMESTAMP)
    DURATION = "duration[us]"  # TIME, which may be negative or exceed 24h


# The value range of each integer kind (what a column of that kind can hold).
INTEGER_RANGES: dict[ArrowKind, tuple[int, int]] = {
    ArrowKind.INT8: (-(2**7), 2**7 - 1),
    ArrowKind.INT16: (-(2**15), 2**15 - 1),
    ArrowKind.INT32: (-(2**31), 2**31 - 1),
    ArrowKind.INT64: (-(2**63), 2**63 - 1),
    ArrowKind.UINT8: (0, 2**8 - 1),
    ArrowKind.UINT16: (0, 2**16 - 1),
    ArrowKind.UINT32: (0, 2**32 - 1),
    ArrowKind.UINT64: (0, 2**64 - 1),
}


@dataclass(frozen=True, slots=True)
class ArrowType:
    kind: ArrowKind
    precision: int = 0  # DECIMAL only
    scale: int = 0  # DECIMAL only

    def __str__(self) -> str:
        if self.kind is ArrowKind.DECIMAL:
            width = 128 if self.precision <= 38 else 256
            return f"decimal{width}({self.precision}, {self.scale})"
        return str(self.kind.value)

    def to_pyarrow(self) -> Any:
        """The matching ``pyarrow.DataType`` (imports pyarrow on first use)."""
        import pyarrow as pa  # lazy on purpose, see module docstring

        k = ArrowKind
        simple = {
            k.BOOL: pa.bool_(),
            k.INT8: pa.int8(),
            k.INT16: pa.int16(),
            k.INT32: pa.int32(),
            k.INT64: pa.int64(),
            k.UINT8: pa.uint8(),
            k.UINT16: pa.uint16(),
            k.UINT32: pa.uint32(),
            k.UINT64: pa.uint64(),
            k.FLOAT32: pa.float32(),
            k.FLOAT64: pa.float64(),
            k.STRING: pa.string(),
            k.BINARY: pa.binary(),
            k.DATE: pa.date32(),
            k.TIMESTAMP: pa.timestamp("us"),
            k.TIMESTAMP_UTC: pa.timestamp("us", tz="UTC"),
            k.DURATION: pa.duration("us"),
        }
        if self.kind is k.DECIMAL:
            factory = pa.decimal128 if self.precision <= 38 else pa.decimal256
            return factory(self.precision, self.scale)
        return simple[self.kind]


@dataclass(frozen=True, slots=True, order=True)
class TableRef:
    db: str
    table: str

    def __str__(self) -> str:
        return f"{self.db}.{self.table}"


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    source_type: str  # as the source spells it, e.g. "bigint unsigned", "decimal(65,30)", "datetime(6)"
    arrow_type: ArrowType
    nullable: bool = True

    def to_row(self) -> list[object]:
        """A compact JSON-ready form, for sinks that record the source shapes they follow."""
        t = self.arrow_type
        return [self.name, self.source_type, t.kind.value, t.precision, t.scale, self.nullable]

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Column:
        name, source_type, kind, precision, scale, nullable = row
        return cls(
            str(name),
            str(source_type),
            ArrowType(ArrowKind(kind), int(precision), int(scale)),
            bool(nullable),
        )


@dataclass(frozen=True, slots=True)
class TableSchema:
    """Columns in source order, the primary key, and a version that changes iff the shape changes.

    ``version`` is a fingerprint of the columns and key, not a counter: it is identical whenever the
    same table shape is read again (after a restart, from another replica), which a counter is not.
    """

    ref: TableRef
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    version: str

    @classmethod
    def build(cls, ref: TableRef, columns: tuple[Column, ...], primary_key: tuple[str, ...]) -> TableSchema:
        names = {c.name for c in columns}
        missing = [k for k in primary_key if k not in names]
        if missing:
            raise ValueError(f"{ref}: primary key columns {missing} are not columns of the table")
        return cls(ref, columns, primary_key, schema_fingerprint(ref, columns, primary_key))

    @property
    def db(self) -> str:
        return self.ref.db

    @property
    def table(self) -> str:
        return self.ref.table

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def key_indexes(self) -> tuple[int, ...]:
        names = self.column_names
        return tuple(names.index(k) for k in self.primary_key)


def schema_fingerprint(ref: TableRef, columns: tuple[Column, ...], primary_key: tuple[str, ...]) -> str:
    parts = [
        str(ref),
        *(f"{c.name}\x1f{c.source_type}\x1f{c.arrow_type}\x1f{c.nullable}" for c in columns),
        "pk:" + "\x1f".join(primary_key),
    ]
    return hashlib.sha256("\x1e".join(parts).encode()).hexdigest()[:16]
