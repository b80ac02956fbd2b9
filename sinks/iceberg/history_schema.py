"""The shape of a history table: a source TableSchema mapped to Iceberg and Arrow, faithfully.

Every source column becomes an *optional* Iceberg column (delete rows of a keyless table and truncate
rows carry nulls, and columns added later are optional by Iceberg's rules), followed by four required
bookkeeping columns:

- ``_op``         string: c, u, d, r, t
- ``_position``   string: ``Position.to_string()``, which sorts like the positions themselves
- ``_source_ts``  timestamptz (us): the source commit time; the table is partitioned by day of it
- ``_txn``        string: the source transaction's GTID

Type decisions where Iceberg has no exact match (the source type is kept in each field's ``doc`` and
the Arrow kind in the table property ``headwater.column_kinds`` so readers can map values back):

=====================  ==========================  =========================================================
source (Arrow kind)    Iceberg                     why
=====================  ==========================  =========================================================
int8/int16/int32,      int                         exact; Iceberg has no narrower integer
uint8/uint16
int64, uint32          long                        uint32 does not fit an int
uint64                 decimal(20, 0)              exact for 0..2**64-1; Iceberg has no unsigned long, and
                                                   a string would not sort or sum
float32 / float64      float / double              exact
decimal(p<=38, s)      decimal(p, s)               exact
decimal(p>38, s)       string (plain notation,     Iceberg stops at precision 38; MariaDB allows 65. The
                       scale digits kept)          text is exact; cast it in the query engine
string / binary        string / binary             exact
date                   date                        exact
timestamp (DATETIME)   timestamp (us, no zone)     wall-clock value as the source stores it
timestamp UTC          timestamptz (us)            an instant (MariaDB TIMESTAMP)
duration (TIME)        long (microseconds)         Iceberg ``time`` is 00:00..24:00; MariaDB TIME spans
                                                   -838:59:59..838:59:59
=====================  ==========================  =========================================================
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IcebergType,
    IntegerType,
    LongType,
    NestedField,
    StringType,
    TimestampType,
    TimestamptzType,
)

from cdc.core.errors import SinkSchemaError
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableSchema

__all__ = [
    "COLUMN_KINDS_PROPERTY",
    "COMMIT_PROPERTIES",
    "MANIFEST_MERGE_PROPERTIES",
    "METADATA_FILES_PROPERTIES",
    "META_COLUMNS",
    "PARQUET_LAYOUT_PROPERTIES",
    "PRIMARY_KEY_PROPERTY",
    "SOURCE_PROPERTY",
    "HistoryColumn",
    "arrow_schema_of",
    "check_evolution",
    "history_columns",
    "history_iceberg_schema",
    "history_partition_spec",
    "iceberg_type_of",
    "promotable",
    "to_source_values",
]

OP, POSITION, SOURCE_TS, TXN = "_op", "_position", "_source_ts", "_txn"
META_COLUMNS = (OP, POSITION, SOURCE_TS, TXN)
SOURCE_PROPERTY = "headwater.source"  # "db.table" the history belongs to
PRIMARY_KEY_PROPERTY = "headwater.primary_key"  # JSON list, the latest schema's key
COLUMN_KINDS_PROPERTY = "headwater.column_kinds"  # JSON {column: ArrowKind value}, union of versions
PIPELINE_PROPERTY = "headwater.pipeline"

_TS_UTC = pa.timestamp("us", tz="UTC")
_SMALL_INTS = {ArrowKind.INT8, ArrowKind.INT16, ArrowKind.INT32, ArrowKind.UINT8, ArrowKind.UINT16}


def iceberg_type_of(arrow_type: ArrowType) -> IcebergType:
    """The Iceberg type a source column is stored as (see the table in the module docstring)."""
    k = arrow_type.kind
    if k in _SMALL_INTS:
        return IntegerType()
    if k in (ArrowKind.INT64, ArrowKind.UINT32, ArrowKind.DURATION):
        return LongType()
    if k is ArrowKind.UINT64:
        return DecimalType(20, 0)
    if k is ArrowKind.DECIMAL:
        if arrow_type.precision > 38:
            return StringType()
        return DecimalType(arrow_type.precision, arrow_type.scale)
    simple: dict[ArrowKind, IcebergType] = {
        ArrowKind.BOOL: BooleanType(),
        ArrowKind.FLOAT32: FloatType(),
        ArrowKind.FLOAT64: DoubleType(),
        ArrowKind.STRING: StringType(),
        ArrowKind.BINARY: BinaryType(),
        ArrowKind.DATE: DateType(),
        ArrowKind.TIMESTAMP: TimestampType(),
        ArrowKind.TIMESTAMP_UTC: TimestamptzType(),
    }
    return simple[k]


def _arrow_of_iceberg(iceberg_type: IcebergType) -> pa.DataType:
    if isinstance(iceberg_type, DecimalType):
        return pa.decimal128(iceberg_type.precision, iceberg_type.scale)
    simple: dict[type[IcebergType], pa.DataType] = {
        BooleanType: pa.bool_(),
        IntegerType: pa.int32(),
        LongType: pa.int64(),
        FloatType: pa.float32(),
        DoubleType: pa.float64(),
        StringType: pa.string(),
        BinaryType: pa.binary(),
        DateType: pa.date32(),
        TimestampType: pa.timestamp("us"),
        TimestamptzType: _TS_UTC,
    }
    return simple[type(iceberg_type)]


@dataclass(frozen=True, slots=True)
class HistoryColumn:
    """One source column as the history stores it: how to turn source values into the Arrow column."""

    name: str
    source_type: str
    kind: ArrowKind
    source_arrow: pa.DataType  # what the Python values are built as
    iceberg_type: IcebergType
    arrow: pa.DataType  # what is written (cast from source_arrow when different)

    def to_array(self, values: Sequence[Any]) -> pa.Array:
        array = pa.array(values, type=self.source_arrow)
        return array if self.source_arrow == self.arrow else array.cast(self.arrow)


def history_columns(schema: TableSchema) -> tuple[HistoryColumn, ...]:
    return tuple(_history_column(c) for c in schema.columns)


def _history_column(column: Column) -> HistoryColumn:
    iceberg_type = iceberg_type_of(column.arrow_type)
    return HistoryColumn(
        name=column.name,
        source_type=column.source_type,
        kind=column.arrow_type.kind,
        source_arrow=column.arrow_type.to_pyarrow(),
        iceberg_type=iceberg_type,
        arrow=_arrow_of_iceberg(iceberg_type),
    )


_STORED_AS = {
    ArrowKind.UINT64: "stored as decimal(20, 0): Iceberg has no unsigned long",
    ArrowKind.DURATION: "stored as microseconds: TIME may be negative or exceed 24 hours",
}


def _doc(column: HistoryColumn) -> str:
    note = _STORED_AS.get(column.kind)
    if column.kind is ArrowKind.DECIMAL and isinstance(column.iceberg_type, StringType):
        note = "stored as exact decimal text: Iceberg decimals stop at precision 38"
    return f"source type: {column.source_type}" + (f"; {note}" if note else "")


def history_iceberg_schema(schema: TableSchema) -> Schema:
    fields = [
        NestedField(i, c.name, c.iceberg_type, required=False, doc=_doc(c))
        for i, c in enumerate(history_columns(schema), start=1)
    ]
    n = len(fields)
    fields += [
        NestedField(
            n + 1, OP, StringType(), required=True, doc="c insert, u update, d delete, r read, t truncate"
        ),
        NestedField(n + 2, POSITION, StringType(), required=True, doc="source position, sortable"),
        NestedField(n + 3, SOURCE_TS, TimestamptzType(), required=True, doc="source commit time"),
        NestedField(n + 4, TXN, StringType(), required=True, doc="source transaction id (GTID)"),
    ]
    return Schema(*fields)


# The Parquet layout of new history tables: Iceberg's own table properties (what a reader sees is the
# same). Most history columns hold mostly distinct values (_position, keys, texts, hashes): under
# pyarrow's 2 MiB dictionary limit, checked every 20,000 rows, each was hashed into a dictionary until
# it overflowed and was then written plain anyway, 40% of the Parquet CPU. At 64 KiB checked every
# 4,096 rows they fall back at once, and low-cardinality columns (_op, flags, namespaces) keep their
# dictionary. Measured on the benchmark's 200k changes (zstd, one core): 0.85 -> 0.57 CPU-us per row
# written, files 5.2 -> 4.0 MB.
PARQUET_LAYOUT_PROPERTIES = {
    "write.parquet.dict-size-bytes": "65536",
    "write.parquet.page-row-limit": "4096",
}


# Iceberg's manifest merge on history tables (pyiceberg's merge append): every commit would otherwise add
# a manifest the next commit reads and rewrites with the manifest list, ~85 ms of CPU per commit by the
# end of a day of 30 s commits. With it, once 100 small manifests are listed (Iceberg's default) the
# commit writes them into one, up to 1 MiB (Iceberg's default is 8): a merge rewrites the newest merged
# manifest too, ~0.8 ms of CPU per KiB in pyiceberg (3,100 entries, 650 KiB: 0.54 s), so 8 MiB would
# cost ~7 s every 100 commits once a table holds that many files. See sinks.iceberg.snapshot_bound.
MANIFEST_MERGE_PROPERTIES = {
    "commit.manifest-merge.enabled": "true",
    "commit.manifest.min-count-to-merge": "100",
    "commit.manifest.target-size-bytes": str(1024 * 1024),
}
# Each commit writes a new metadata JSON (~0.8 KiB per snapshot held, ~200 KiB at the snapshot cap)
# and nothing removed the old ones: about 17 GB a day per table at a commit a second. pyiceberg
# deletes all but the newest 100 after each commit with these (Iceberg's own properties; a reader
# loads the current file, and 100 commits is minutes of grace for one planning on an older file).
METADATA_FILES_PROPERTIES = {
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "100",
}
# what every history table is created with and what a table from before is given on open
COMMIT_PROPERTIES = {**MANIFEST_MERGE_PROPERTIES, **METADATA_FILES_PROPERTIES}


def history_partition_spec(schema: Schema) -> PartitionSpec:
    source_id = schema.find_field(SOURCE_TS).field_id
    return PartitionSpec(
        PartitionField(source_id=source_id, field_id=1000, transform=DayTransform(), name="_source_day")
    )


def arrow_schema_of(iceberg_schema: Schema) -> pa.Schema:
    """The Arrow schema batches are written with: plain (non-large) types, nullability as in Iceberg."""
    return pa.schema(
        [
            pa.field(f.name, _arrow_of_iceberg(f.field_type), nullable=not f.required)
            for f in iceberg_schema.fields
        ]
    )


def table_properties(
    pipeline: str,
    schema: TableSchema,
    kinds: Mapping[str, str] | None = None,
    keep: Collection[str] = (),
) -> dict[str, str]:
    """The table's headwater properties; ``keep`` names columns whose recorded kind stays."""
    merged = dict(kinds or {})
    merged.update(
        {
            c.name: c.arrow_type.kind.value
            for c in schema.columns
            if c.name not in merged or c.name not in keep
        }
    )
    return {
        **COMMIT_PROPERTIES,  # set again by a schema change: a table from before gets them then too
        PIPELINE_PROPERTY: pipeline,
        SOURCE_PROPERTY: str(schema.ref),
        PRIMARY_KEY_PROPERTY: json.dumps(list(schema.primary_key)),
        COLUMN_KINDS_PROPERTY: json.dumps(merged, sort_keys=True),
    }


def promotable(old: IcebergType, new: IcebergType) -> bool:
    if old == new:
        return True
    if isinstance(old, IntegerType) and isinstance(new, LongType):
        return True
    if isinstance(old, FloatType) and isinstance(new, DoubleType):
        return True
    return (
        isinstance(old, DecimalType)
        and isinstance(new, DecimalType)
        and new.scale == old.scale
        and new.precision >= old.precision
    )


def check_evolution(table_name: str, current: Schema, schema: TableSchema) -> bool:
    """True when ``schema`` needs the history table's schema changed (new columns, safe promotions).

    Raises SinkSchemaError naming the table and column for anything that is not safe: a type
    change Iceberg cannot promote, or a source column named like a bookkeeping column.
    """
    needed = False
    names = {f.name: f for f in current.fields}
    for column in history_columns(schema):
        if column.name in META_COLUMNS:
            raise SinkSchemaError(table_name, column.name, "the name is reserved for history bookkeeping")
        existing = names.get(column.name)
        if existing is None:
            needed = True
        elif existing.field_type != column.iceberg_type:
            if not promotable(existing.field_type, column.iceberg_type):
                raise SinkSchemaError(
                    table_name,
                    column.name,
                    f"cannot change {existing.field_type} to {column.iceberg_type} "
                    f"(source type {column.source_type}); only int->long, float->double and "
                    "decimal precision widening are applied",
                )
            needed = True
    return needed


def to_source_values(rows: pa.Table, column_kinds: Mapping[str, str]) -> list[dict[str, Any]]:
    """History rows as dicts of the source's Python values (the inverse of the type mapping).

    uint64 decimals become ints, TIME microseconds timedeltas, wide-decimal text Decimals; the
    bookkeeping columns are kept as they are.
    """
    converters: dict[str, Any] = {}
    for name, kind in column_kinds.items():
        if kind == ArrowKind.UINT64.value:
            converters[name] = int
        elif kind == ArrowKind.DURATION.value:
            converters[name] = _micros_to_timedelta
        elif kind == ArrowKind.DECIMAL.value:
            converters[name] = _text_to_decimal
    out: list[dict[str, Any]] = rows.to_pylist()
    present = [(name, fn) for name, fn in converters.items() if name in rows.column_names]
    for row in out:
        for name, fn in present:
            value = row[name]
            if value is not None:
                row[name] = fn(value)
    return out


def _micros_to_timedelta(value: int) -> dt.timedelta:
    return dt.timedelta(microseconds=value)


def _text_to_decimal(value: object) -> decimal.Decimal:
    # decimal(p<=38) columns already read back as Decimal; wider ones are stored as text
    return value if isinstance(value, decimal.Decimal) else decimal.Decimal(str(value))


def evolution_schema(schema: TableSchema) -> Schema:
    """What ``update_schema().union_by_name`` is given: the source columns (all optional, with docs)."""
    full = history_iceberg_schema(schema)
    return Schema(*[f for f in full.fields if f.name not in META_COLUMNS])
