"""What a history column does when its source column changes type (``schema_changes: apply``).

The history must keep every version's values and the pipeline must keep running, whatever the
change. Three outcomes, judged from the source types before and after and the Iceberg type the
history column has now (which may be wider than either, kept from an earlier version):

- **widen**: Iceberg can promote the column (int->long, float->double, decimal precision growing at
  the same scale); it is promoted and both versions' values land in it;
- **keep**: the new type's values all fit the column as it is (a narrower integer into long/int, int
  unsigned into long, float into double, a decimal whose integer digits and scale both fit, shorter
  strings or binaries); the column stays as it is and the new values are cast into it exactly;
- **move aside**: anything else, a change to another family (INT -> VARCHAR, DATETIME -> TIMESTAMP,
  TIME -> BIGINT) or a decimal whose scale or integer digits grow beyond what Iceberg can promote:
  the old column is renamed ``<name>__<its Iceberg type>`` (``qty__int``, ``price__decimal_10_2``;
  ``qty__int2`` should that name be taken) and keeps the old rows' values, and a new column ``<name>``
  of the new type holds the values from then on (null in the older rows).

Families are judged on the source's Arrow kinds, not on the Iceberg types alone: TIME is stored as
long microseconds, and a BIGINT written into that column would read back as a duration.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Collection

from pyiceberg.types import (
    DecimalType,
    DoubleType,
    FloatType,
    IcebergType,
    IntegerType,
    LongType,
    StringType,
)

from cdc.core.schemas import INTEGER_RANGES, ArrowKind, Column
from sinks.iceberg.history_schema import iceberg_type_of, promotable

__all__ = ["Retype", "aside_name", "holds", "judge_retype"]


class Retype(enum.Enum):
    WIDEN = "widen"
    KEEP = "keep"
    MOVE_ASIDE = "move aside"


_INTEGERS = frozenset(INTEGER_RANGES)
_FLOATS = frozenset({ArrowKind.FLOAT32, ArrowKind.FLOAT64})
# decimal digits of each integer kind's extreme values (a decimal(p, s) column holds p - s)
_DIGITS = {
    ArrowKind.INT8: 3,
    ArrowKind.UINT8: 3,
    ArrowKind.INT16: 5,
    ArrowKind.UINT16: 5,
    ArrowKind.INT32: 10,
    ArrowKind.UINT32: 10,
    ArrowKind.INT64: 19,
    ArrowKind.UINT64: 20,
}


def _family(kind: ArrowKind) -> str:
    if kind in _INTEGERS:
        return "integer"
    if kind in _FLOATS:
        return "float"
    return kind.value


def holds(stored: IcebergType, column: Column) -> bool:
    """Whether every value of ``column`` fits the history column of type ``stored`` exactly."""
    wanted = iceberg_type_of(column.arrow_type)
    if stored == wanted:
        return True
    kind = column.arrow_type.kind
    if isinstance(stored, LongType):
        return isinstance(wanted, IntegerType)
    if isinstance(stored, DoubleType):
        return isinstance(wanted, FloatType)
    if isinstance(stored, DecimalType):
        if kind in _DIGITS:
            return _DIGITS[kind] <= stored.precision - stored.scale
        return (
            isinstance(wanted, DecimalType)
            and wanted.scale <= stored.scale
            and wanted.precision - wanted.scale <= stored.precision - stored.scale
        )
    # a decimal wider than Iceberg's 38 digits is stored as its exact text: any decimal fits
    return isinstance(stored, StringType) and kind is ArrowKind.DECIMAL


def judge_retype(before: Column, after: Column, stored: IcebergType) -> Retype:
    """What the history column of type ``stored`` (holding ``before``'s values) does for ``after``."""
    if _family(before.arrow_type.kind) != _family(after.arrow_type.kind):
        return Retype.MOVE_ASIDE
    if holds(stored, after):
        return Retype.KEEP
    if promotable(stored, iceberg_type_of(after.arrow_type)):
        return Retype.WIDEN
    return Retype.MOVE_ASIDE


def aside_name(name: str, stored: IcebergType, taken: Collection[str]) -> str:
    """``<name>__<type>`` (``decimal(10, 2)`` as ``decimal_10_2``), numbered from 2 when taken."""
    base = f"{name}__{re.sub(r'[^a-z0-9]+', '_', str(stored).lower()).strip('_')}"
    free, n = base, 1
    while free in taken:
        n += 1
        free = f"{base}{n}"
    return free
