"""From binlog column descriptions to the vocabulary's TableSchema (source type text + Arrow type)."""

from __future__ import annotations

from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from cdc.sources.mariadb.binlog_format import FieldType as T
from cdc.sources.mariadb.table_map import ColumnSpec, TableMap

__all__ = ["table_schema"]

_INTS = {
    T.TINY: ("tinyint", ArrowKind.INT8, ArrowKind.UINT8),
    T.SHORT: ("smallint", ArrowKind.INT16, ArrowKind.UINT16),
    T.INT24: ("mediumint", ArrowKind.INT32, ArrowKind.UINT32),
    T.LONG: ("int", ArrowKind.INT32, ArrowKind.UINT32),
    T.LONGLONG: ("bigint", ArrowKind.INT64, ArrowKind.UINT64),
}
_BLOB_NAMES = {1: "tiny", 2: "", 3: "medium", 4: "long"}


def _column(spec: ColumnSpec, binary: bool, extended: str | None) -> Column:
    t, meta = spec.type_code, spec.meta

    def col(source: str, kind: ArrowKind, precision: int = 0, scale: int = 0) -> Column:
        return Column(spec.name, source, ArrowType(kind, precision, scale), spec.nullable)

    if t in _INTS:
        name, signed, unsigned = _INTS[t]
        return col(f"{name} unsigned", unsigned) if spec.unsigned else col(name, signed)
    if t == T.FLOAT:
        return col("float", ArrowKind.FLOAT32)
    if t == T.DOUBLE:
        return col("double", ArrowKind.FLOAT64)
    if t == T.NEWDECIMAL:
        p, s = meta >> 8, meta & 0xFF
        return col(f"decimal({p},{s})", ArrowKind.DECIMAL, p, s)
    if t == T.YEAR:
        return col("year", ArrowKind.INT16)
    if t == T.DATE:
        return col("date", ArrowKind.DATE)
    if t == T.DATETIME2:
        return col(f"datetime({meta})" if meta else "datetime", ArrowKind.TIMESTAMP)
    if t in (T.TIMESTAMP2, T.TIMESTAMP):
        return col(f"timestamp({meta})" if meta else "timestamp", ArrowKind.TIMESTAMP_UTC)
    if t == T.TIME2:
        return col(f"time({meta})" if meta else "time", ArrowKind.DURATION)
    if t == T.BIT:
        return col(f"bit({(meta & 0xFF) * 8 + (meta >> 8)})", ArrowKind.UINT64)
    if t in (T.VARCHAR, T.VAR_STRING):
        kind = ArrowKind.BINARY if binary else ArrowKind.STRING
        return col(f"varbinary({meta})" if binary else "varchar", kind)
    if t == T.STRING:
        if extended is not None:
            return col(extended, ArrowKind.STRING)
        return col(f"binary({meta})" if binary else "char", ArrowKind.BINARY if binary else ArrowKind.STRING)
    if t in (T.BLOB, T.TINY_BLOB, T.MEDIUM_BLOB, T.LONG_BLOB):
        size = _BLOB_NAMES.get(meta, "")
        kind = ArrowKind.BINARY if binary else ArrowKind.STRING
        return col(f"{size}blob" if binary else f"{size}text", kind)
    if t == T.GEOMETRY:
        return col("geometry", ArrowKind.BINARY)
    if t == T.ENUM:
        return col("enum(" + ",".join(repr(v) for v in spec.values) + ")", ArrowKind.STRING)
    if t == T.SET:
        return col("set(" + ",".join(repr(v) for v in spec.values) + ")", ArrowKind.STRING)
    return col(f"binlog type {t}", ArrowKind.BINARY)  # the row decoder rejects it first


def table_schema(
    tm: TableMap, binary_collation: int = 63, extended_types: tuple[tuple[str, str], ...] = ()
) -> TableSchema:
    """The TableSchema of a TABLE_MAP; char lengths are not in the binlog, so text types carry none."""
    ext = dict(extended_types)
    columns = tuple(_column(c, c.collation == binary_collation, ext.get(c.name)) for c in tm.columns)
    pk = tuple(tm.columns[i].name for i in tm.primary_key)
    return TableSchema.build(TableRef(tm.db, tm.table), columns, pk)
