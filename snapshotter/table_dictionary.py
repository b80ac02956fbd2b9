"""A table's shape from MariaDB's data dictionary, as the binlog decoder would describe it.

The decoder builds a TableSchema from a TABLE_MAP event (type codes, metadata, charsets, key); a
snapshot must hand out the very same TableSchema (same ``version``) for the same table, or the
coordinator would see a schema change between the ``r`` rows and the stream. So the dictionary's
columns are translated into the TABLE_MAP's terms (:class:`ColumnSpec`) and passed through the
decoder's own :func:`table_schema`, never mapped a second time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from cdc.core.errors import UnsupportedColumnType
from cdc.core.schemas import TableRef, TableSchema
from cdc.sources.mariadb.binlog_format import FieldType as T
from cdc.sources.mariadb.table_map import ColumnSpec, TableMap
from cdc.sources.mariadb.type_mapping import table_schema

__all__ = ["COLUMNS_QUERY", "KEYS_QUERY", "DictColumn", "TableDictionary", "build_dictionary"]

BINARY_COLLATION = 63

COLUMNS_QUERY = (
    "SELECT c.column_name, c.data_type, c.column_type, c.is_nullable, c.character_set_name,"
    " c.collation_name, c.numeric_precision, c.numeric_scale, c.datetime_precision,"
    " c.character_maximum_length, c.column_key, co.id"
    " FROM information_schema.columns c"
    " LEFT JOIN information_schema.collations co ON co.collation_name = c.collation_name"
    " WHERE c.table_schema = %s AND c.table_name = %s ORDER BY c.ordinal_position"
)
# The key MariaDB logs as the table's primary key: PRIMARY, or (without one) a UNIQUE index over NOT
# NULL columns that the server promotes to primary (information_schema marks its columns 'PRI').
KEYS_QUERY = (
    "SELECT index_name, column_name, seq_in_index, non_unique FROM information_schema.statistics"
    " WHERE table_schema = %s AND table_name = %s ORDER BY index_name, seq_in_index"
)

_INTS = {"tinyint": T.TINY, "smallint": T.SHORT, "mediumint": T.INT24, "int": T.LONG, "bigint": T.LONGLONG}
_BLOBS = {"tiny": 1, "": 2, "medium": 3, "long": 4}
_GEOMETRIES = frozenset(
    {
        "geometry",
        "point",
        "linestring",
        "polygon",
        "multipoint",
        "multilinestring",
        "multipolygon",
        "geometrycollection",
    }
)
_EXTENDED = {"uuid": 16, "inet4": 4, "inet6": 16}  # stored (and logged) as BINARY(n)
_QUOTED = re.compile(r"'((?:[^']|'')*)'")


@dataclass(frozen=True, slots=True)
class DictColumn:
    """One column as the dictionary describes it, with what reading its values needs."""

    name: str
    data_type: str  # information_schema.columns.data_type, lower case ("int", "varchar", "uuid")
    spec: ColumnSpec  # the same column as a TABLE_MAP would describe it
    charset: str | None  # character set of a text column; None for binary and non-text columns
    collation: str | None  # collation name of a text column (keyset comparisons use it)
    extended: str | None  # "uuid" | "inet4" | "inet6"


@dataclass(frozen=True, slots=True)
class TableDictionary:
    schema: TableSchema
    columns: tuple[DictColumn, ...]

    @property
    def key_columns(self) -> tuple[DictColumn, ...]:
        by_name = {c.name: c for c in self.columns}
        return tuple(by_name[k] for k in self.schema.primary_key)


def _enum_values(column_type: str) -> tuple[str, ...]:
    # column_type is e.g. enum('a','it''s'); the TABLE_MAP carries the members unquoted
    inner = column_type[column_type.index("(") + 1 : column_type.rindex(")")]
    return tuple(m.group(1).replace("''", "'") for m in _QUOTED.finditer(inner))


def _spec(
    ref: TableRef, name: str, data_type: str, column_type: str, nullable: bool, collation_id: int | None,
    precision: int | None, scale: int | None, fsp: int | None, max_chars: int | None,
) -> ColumnSpec:  # fmt: skip
    unsigned = "unsigned" in column_type
    binary = collation_id is None  # binary types have no collation in the dictionary
    collation = BINARY_COLLATION if binary else collation_id

    def spec(
        type_code: int, meta: int = 0, *, values: tuple[str, ...] = (), text: bool = False
    ) -> ColumnSpec:
        return ColumnSpec(name, type_code, meta, nullable, unsigned, collation if text else None, values)

    if data_type in _INTS:
        return spec(_INTS[data_type])
    if data_type == "float":
        return spec(T.FLOAT, 4)
    if data_type == "double":
        return spec(T.DOUBLE, 8)
    if data_type == "decimal":
        return spec(T.NEWDECIMAL, (precision or 0) << 8 | (scale or 0))
    if data_type == "year":
        return spec(T.YEAR)
    if data_type == "date":
        return spec(T.DATE)
    if data_type == "datetime":
        return spec(T.DATETIME2, fsp or 0)
    if data_type == "timestamp":
        return spec(T.TIMESTAMP2, fsp or 0)
    if data_type == "time":
        return spec(T.TIME2, fsp or 0)
    if data_type == "bit":
        bits = precision or 1
        return spec(T.BIT, (bits % 8) << 8 | bits // 8)
    if data_type in ("char", "binary"):
        return spec(T.STRING, max_chars or 0, text=True)
    if data_type in _EXTENDED:
        return ColumnSpec(name, T.STRING, _EXTENDED[data_type], nullable, False, BINARY_COLLATION)
    if data_type in ("varchar", "varbinary"):
        return spec(T.VARCHAR, max_chars or 0, text=True)
    if data_type.endswith(("text", "blob")):
        return spec(T.BLOB, _BLOBS[data_type[: -len("text")]], text=True)
    if data_type in _GEOMETRIES:
        return spec(T.GEOMETRY, 4, text=True)
    if data_type == "enum":
        return spec(
            T.ENUM, 1 if len(_enum_values(column_type)) < 256 else 2, values=_enum_values(column_type)
        )
    if data_type == "set":
        members = _enum_values(column_type)
        return spec(T.SET, (len(members) + 7) // 8, values=members)
    raise UnsupportedColumnType(ref.db, ref.table, name, data_type)


def _str(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _primary_key(key_rows: Sequence[Sequence[object]], marked: frozenset[str]) -> tuple[str, ...]:
    indexes: dict[str, list[str]] = {}
    unique: set[str] = set()
    for index, column, _seq, non_unique in key_rows:
        name = _str(index)
        indexes.setdefault(name, []).append(_str(column))
        if not int(_str(non_unique)):
            unique.add(name)
    if "PRIMARY" in indexes:
        return tuple(indexes["PRIMARY"])
    # a promoted UNIQUE NOT NULL key: the one whose columns the dictionary marks PRI
    for index in sorted(unique):
        if marked and set(indexes[index]) == marked:
            return tuple(indexes[index])
    return ()


def build_dictionary(
    ref: TableRef, column_rows: Sequence[Sequence[object]], key_rows: Sequence[Sequence[object]]
) -> TableDictionary:
    """From the rows of :data:`COLUMNS_QUERY` and :data:`KEYS_QUERY` (values as str/int/None)."""

    def text(v: object) -> str | None:
        return None if v is None else (v.decode() if isinstance(v, bytes) else str(v))

    def num(v: object) -> int | None:
        return None if v is None else int(str(text(v)))

    columns: list[DictColumn] = []
    marked: set[str] = set()
    for row in column_rows:
        name, data_type, column_type = str(text(row[0])), str(text(row[1])).lower(), str(text(row[2])).lower()
        nullable = text(row[3]) == "YES"
        charset, collation = text(row[4]), text(row[5])
        if text(row[10]) == "PRI":
            marked.add(name)
        spec = _spec(
            ref, name, data_type, column_type, nullable, num(row[11]),
            num(row[6]), num(row[7]), num(row[8]), num(row[9]),
        )  # fmt: skip
        if data_type in ("char", "binary") and charset is None:
            # BINARY(n): the TABLE_MAP's length is in bytes, which is n for the binary charset
            spec = ColumnSpec(name, T.STRING, num(row[9]) or 0, nullable, False, BINARY_COLLATION)
        extended = data_type if data_type in _EXTENDED else None
        columns.append(DictColumn(name, data_type, spec, charset, collation, extended))
    names = [c.name for c in columns]
    pk = _primary_key(key_rows, frozenset(marked))
    tm = TableMap(
        0, ref.db, ref.table, tuple(c.spec for c in columns), tuple(names.index(k) for k in pk), True
    )
    ext = tuple((c.name, c.extended) for c in columns if c.extended is not None)
    return TableDictionary(table_schema(tm, BINARY_COLLATION, ext), tuple(columns))
