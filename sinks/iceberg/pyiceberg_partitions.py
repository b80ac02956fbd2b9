"""A shortcut pyiceberg 0.12 lacks: an append whose rows all fall in one partition is not filtered.

pyiceberg's ``_determine_partitions`` groups the appended table by its partition values, then, for
each group, filters the whole table (an Acero plan) and combines the result into fresh buffers. A
history commit nearly always holds one day of ``_source_ts`` (the history's partition), so that
filter copied every row to keep every row: 20% of the commit thread's CPU in `cdc sink` into Iceberg
(cProfile of 200k changes applied in 5,000-change batches: ``_filter_table`` 0.78 of 3.69 s).

The shortcut is exact: when every partition field's transformed values are one non-null value (or
all null), the single partition's rows are all the rows, in their order, which is what the filter
returned; the partition key is built from that value as pyiceberg builds it (``as_py`` of the
group's value, which ``to_pylist`` gives too). Anything else goes to pyiceberg's own function.
Remove this module once a pyiceberg release skips the filter for a single partition.

Two more things it does without pyiceberg's help, for the history's day partition of a microsecond
timestamp (``_source_ts``):

- the day comes from the column's min and max (the day transform is monotone, so one day at both
  ends is one day throughout) through pyiceberg's own Python day function, and several days are
  told apart with an Arrow cast (timestamp -> date32: days since 1970, floored, the values
  pyiceberg_core's ``transform.day`` gives; a unit test compares them). So the sink never loads
  pyiceberg_core, a 39 MB Rust library whose import alone is 9.5 MiB of RSS (`cdc sink` into
  Iceberg, measured: 130 -> 139.5 MiB), only for that transform; other transforms still use it;
- the table is handed on as it comes, without ``combine_chunks``, when its chunks are already large
  (``table_writer`` makes pieces of at least ``MIN_CHUNK_ROWS`` rows, but the last): a copy of the
  whole commit held next to its chunks was the commit's peak memory. A table of smaller chunks is combined as
  pyiceberg does (it writes a table of many small chunks slowly, per batch).
"""

from __future__ import annotations

import functools
import logging
import operator
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.io import pyarrow as pyiceberg_arrow
from pyiceberg.partitioning import PartitionFieldValue, PartitionKey, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform, Transform
from pyiceberg.types import IcebergType, TimestampType, TimestamptzType

__all__ = ["MIN_CHUNK_ROWS", "install"]

log = logging.getLogger(__name__)

_ORIGINAL: Any = getattr(pyiceberg_arrow, "_determine_partitions", None)
# a table whose chunks average at least this many rows is written as it is (not combined first)
MIN_CHUNK_ROWS = 8_192
_MICROS = pa.timestamp("us")


def _is_day_of_micros(transform: Any, source_type: IcebergType, column: pa.ChunkedArray) -> bool:
    return (
        isinstance(transform, DayTransform)
        and isinstance(source_type, (TimestampType, TimestamptzType))
        and pa.types.is_timestamp(column.type)
        and column.type.unit == "us"
    )


def _day_field(partition: Any, schema: Schema, arrow_table: pa.Table) -> bool:
    name = schema.find_column_name(partition.source_id)
    if name is None or name not in arrow_table.column_names:
        return False
    source_type = schema.find_field(partition.source_id).field_type
    return _is_day_of_micros(partition.transform, source_type, arrow_table.column(name))


def _days(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Days since 1970 (floored) of microsecond timestamps, in UTC whatever the column's zone."""
    return column.cast(pa.int64()).cast(_MICROS).cast(pa.date32()).cast(pa.int32())


def _single_day(
    transform: Transform[Any, Any], source_type: IcebergType, column: pa.ChunkedArray
) -> tuple[bool, Any]:
    """(True, the day) when every value of ``column`` is in one day (None: all null), else (False, None)."""
    n = len(column)
    if n == 0:
        return False, None
    nulls = column.null_count
    if nulls == n:
        return True, None
    if nulls:
        return False, None
    low_high = pc.min_max(column)
    day = transform.transform(source_type)
    low, high = day(low_high["min"].value), day(low_high["max"].value)
    return (True, low) if low == high else (False, None)


def _single_value(values: pa.Array | pa.ChunkedArray) -> tuple[bool, Any]:
    """(True, the value) when ``values`` hold one value throughout (None: all null), else (False, None)."""
    n = len(values)
    if n == 0 or pa.types.is_floating(values.type):  # NaN equals nothing in pyiceberg's filter
        return False, None
    nulls = values.null_count
    if nulls == n:
        return True, None
    if nulls:
        return False, None
    low_high = pc.min_max(values)
    low, high = low_high["min"], low_high["max"]
    if not low.is_valid or low != high:
        return False, None
    return True, values[0].as_py()


def determine_partitions(spec: PartitionSpec, schema: Schema, arrow_table: pa.Table) -> Iterable[Any]:
    """pyiceberg's ``_determine_partitions``, without its filter when there is one partition."""
    values: list[Any] = []
    single = True
    for partition in spec.fields:
        source_field = schema.find_field(partition.source_id)
        name = schema.find_column_name(partition.source_id)
        if name is None or "." in name or name not in arrow_table.column_names:
            return _ORIGINAL(spec, schema, arrow_table)  # type: ignore[no-any-return]  # nested: pyiceberg's
        column = arrow_table.column(name)
        if _is_day_of_micros(partition.transform, source_field.field_type, column):
            one, value = _single_day(partition.transform, source_field.field_type, column)
        else:
            transformed = partition.transform.pyarrow_transform(source_field.field_type)(column)
            one, value = _single_value(transformed)
        if not one:
            single = False
            break
        values.append(value)
    if not single:
        if all(_day_field(partition, schema, arrow_table) for partition in spec.fields):
            return _by_day(spec, schema, arrow_table)
        return _ORIGINAL(spec, schema, arrow_table)  # type: ignore[no-any-return]
    key = PartitionKey(
        field_values=[
            PartitionFieldValue(field=field, value=value)
            for field, value in zip(spec.fields, values, strict=True)
        ],
        partition_spec=spec,
        schema=schema,
    )
    chunks = max((arrow_table.column(i).num_chunks for i in range(arrow_table.num_columns)), default=1)
    # pieces of MIN_CHUNK_ROWS and a smaller last one (table_writer) average at least half of it
    if chunks > 1 and 2 * arrow_table.num_rows < MIN_CHUNK_ROWS * chunks:
        arrow_table = arrow_table.combine_chunks()
    return [pyiceberg_arrow._TablePartition(partition_key=key, arrow_table_partition=arrow_table)]


def _by_day(spec: PartitionSpec, schema: Schema, arrow_table: pa.Table) -> Iterator[Any]:
    """pyiceberg's ``_determine_partitions`` (the same steps, in the same order) for partition fields
    that are all days of microsecond timestamps, with the days computed by Arrow."""
    names = [f"_partition_{field.name}" for field in spec.fields]
    for partition, name in zip(spec.fields, names, strict=True):
        column = arrow_table.column(schema.find_column_name(partition.source_id))
        arrow_table = arrow_table.append_column(name, _days(column))
    unique = arrow_table.select(names).group_by(names).aggregate([])
    for values in unique.to_pylist():
        key = PartitionKey(
            field_values=[
                PartitionFieldValue(field=field, value=values[name])
                for field, name in zip(spec.fields, names, strict=True)
            ],
            partition_spec=spec,
            schema=schema,
        )
        match = functools.reduce(
            operator.and_,
            [
                pc.field(name) == values[name] if values[name] is not None else pc.field(name).is_null()
                for name in names
            ],
        )
        part = arrow_table.filter(match).drop_columns(names)
        yield pyiceberg_arrow._TablePartition(partition_key=key, arrow_table_partition=part.combine_chunks())


def install() -> None:
    """Put the shortcut in place (once); a pyiceberg whose function differs is left as it is."""
    current = getattr(pyiceberg_arrow, "_determine_partitions", None)
    if current is determine_partitions:
        return
    if _ORIGINAL is None or current is not _ORIGINAL or not hasattr(pyiceberg_arrow, "_TablePartition"):
        log.warning("pyiceberg's _determine_partitions is not the one this shortcut was written for")
        return
    pyiceberg_arrow._determine_partitions = determine_partitions
