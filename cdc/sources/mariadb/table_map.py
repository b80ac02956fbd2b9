"""Parse a TABLE_MAP event (with binlog_row_metadata=FULL) into a typed description of the table.

FULL metadata gives names, signedness, charsets, ENUM/SET values and the primary key, so row decoding
needs no DDL parsing and no information_schema lookup.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdc.core.errors import SourceProtocolError
from cdc.sources.mariadb.binlog_format import FieldType, read_lenenc

__all__ = ["ColumnSpec", "TableMap", "parse_table_map"]

_NUMERIC = frozenset(
    {
        FieldType.TINY,
        FieldType.SHORT,
        FieldType.INT24,
        FieldType.LONG,
        FieldType.LONGLONG,
        FieldType.NEWDECIMAL,
        FieldType.FLOAT,
        FieldType.DOUBLE,
        FieldType.YEAR,
    }
)
# GEOMETRY carries a charset entry on MariaDB (its Field is a blob underneath).
_CHARACTER = frozenset(
    {FieldType.STRING, FieldType.VAR_STRING, FieldType.VARCHAR, FieldType.BLOB, FieldType.GEOMETRY}
)
_ENUM_OR_SET = frozenset({FieldType.ENUM, FieldType.SET})
_META_1 = frozenset(
    {
        FieldType.FLOAT,
        FieldType.DOUBLE,
        FieldType.BLOB,
        FieldType.GEOMETRY,
        FieldType.JSON,
        FieldType.TIMESTAMP2,
        FieldType.DATETIME2,
        FieldType.TIME2,
        FieldType.TINY_BLOB,
        FieldType.MEDIUM_BLOB,
        FieldType.LONG_BLOB,
        FieldType.BLOB_COMPRESSED,
    }
)
_META_2 = frozenset(
    {
        FieldType.VARCHAR,
        FieldType.VAR_STRING,
        FieldType.BIT,
        FieldType.NEWDECIMAL,
        FieldType.STRING,
        FieldType.ENUM,
        FieldType.SET,
        FieldType.VARCHAR_COMPRESSED,
    }
)

# Optional metadata TLV types (sql/log_event.h, enum_optional_metadata_field_type).
_SIGNEDNESS = 1
_DEFAULT_CHARSET = 2
_COLUMN_CHARSET = 3
_COLUMN_NAME = 4
_SET_STR_VALUE = 5
_ENUM_STR_VALUE = 6
_GEOMETRY_TYPE = 7
_SIMPLE_PRIMARY_KEY = 8
_PRIMARY_KEY_WITH_PREFIX = 9
_ENUM_AND_SET_DEFAULT_CHARSET = 10
_ENUM_AND_SET_COLUMN_CHARSET = 11


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One column as the binlog describes it."""

    name: str
    type_code: int  # the real type: ENUM/SET are unwrapped from STRING
    meta: int  # type-specific: max length, length-prefix size, fsp, (precision << 8 | scale), ...
    nullable: bool
    unsigned: bool = False
    collation: int | None = None  # for character, ENUM and SET columns
    values: tuple[str, ...] = ()  # ENUM or SET member names


@dataclass(frozen=True, slots=True)
class TableMap:
    table_id: int
    db: str
    table: str
    columns: tuple[ColumnSpec, ...]
    primary_key: tuple[int, ...]  # column indexes
    has_names: bool  # False when the server does not log FULL metadata


def _read_str_list(data: bytes, pos: int, end: int) -> list[str]:
    names: list[str] = []
    while pos < end:
        n, pos = read_lenenc(data, pos)
        names.append(data[pos : pos + n].decode("utf-8", "surrogateescape"))
        pos += n
    return names


def _read_ints(data: bytes, pos: int, end: int) -> list[int]:
    out: list[int] = []
    while pos < end:
        v, pos = read_lenenc(data, pos)
        out.append(v)
    return out


def _read_value_lists(data: bytes, pos: int, end: int) -> list[tuple[str, ...]]:
    lists: list[tuple[str, ...]] = []
    while pos < end:
        count, pos = read_lenenc(data, pos)
        values = []
        for _ in range(count):
            n, pos = read_lenenc(data, pos)
            values.append(data[pos : pos + n].decode("utf-8", "surrogateescape"))
            pos += n
        lists.append(tuple(values))
    return lists


def _charsets(ints: list[int], default: bool, count: int) -> list[int]:
    """Per-column collations for the ``count`` columns of a kind, from a DEFAULT or COLUMN block."""
    if not default:
        return ints
    out = [ints[0]] * count
    for i in range(1, len(ints) - 1, 2):
        out[ints[i]] = ints[i + 1]
    return out


def parse_table_map(body: bytes, table_id_size: int = 6) -> TableMap:
    """Parse a TABLE_MAP event body (after the 19-byte header, without the checksum)."""
    try:
        return _parse(body, table_id_size)
    except (IndexError, ValueError) as exc:
        raise SourceProtocolError(f"malformed TABLE_MAP event: {exc}") from exc


def _parse(body: bytes, table_id_size: int) -> TableMap:
    table_id = int.from_bytes(body[:table_id_size], "little")
    pos = table_id_size + 2
    n = body[pos]
    db = body[pos + 1 : pos + 1 + n].decode("utf-8", "surrogateescape")
    pos += n + 2
    n = body[pos]
    table = body[pos + 1 : pos + 1 + n].decode("utf-8", "surrogateescape")
    pos += n + 2
    ncols, pos = read_lenenc(body, pos)
    types = list(body[pos : pos + ncols])
    pos += ncols
    meta_len, pos = read_lenenc(body, pos)
    meta_end = pos + meta_len
    metas: list[int] = []
    for i, t in enumerate(types):
        if t in _META_1:
            metas.append(body[pos])
            pos += 1
        elif t == FieldType.STRING:
            real, length = body[pos], body[pos + 1]
            pos += 2
            if (real & 0x30) != 0x30:  # CHAR longer than 255 bytes borrows two bits of the type byte
                length |= ((real & 0x30) ^ 0x30) << 4
                real |= 0x30
            if real in _ENUM_OR_SET:
                types[i] = real
            metas.append(length)
        elif t in _META_2:
            if t in (FieldType.VARCHAR, FieldType.VAR_STRING, FieldType.VARCHAR_COMPRESSED):
                metas.append(int.from_bytes(body[pos : pos + 2], "little"))
            else:  # BIT (bits, bytes), NEWDECIMAL (precision, scale): first byte is the high one
                metas.append(body[pos] << 8 | body[pos + 1])
            pos += 2
        else:
            metas.append(0)
    if pos != meta_end:
        raise ValueError(f"column metadata length {meta_len} does not match the column types")
    null_bytes = (ncols + 7) // 8
    nullmask = int.from_bytes(body[pos : pos + null_bytes], "little")
    pos += null_bytes

    names: list[str] = []
    unsigned_bits: list[bool] = []
    charsets: list[int] = []
    enumset_charsets: list[int] = []
    enum_values: list[tuple[str, ...]] = []
    set_values: list[tuple[str, ...]] = []
    pk: list[int] = []
    n_char = sum(1 for t in types if t in _CHARACTER)
    n_enumset = sum(1 for t in types if t in _ENUM_OR_SET)
    while pos < len(body):
        kind = body[pos]
        length, pos = read_lenenc(body, pos + 1)
        end = pos + length
        if kind == _SIGNEDNESS:
            bits = int.from_bytes(body[pos:end], "big")
            nbits = length * 8
            unsigned_bits = [bool(bits >> (nbits - 1 - k) & 1) for k in range(nbits)]
        elif kind in (_DEFAULT_CHARSET, _COLUMN_CHARSET):
            charsets = _charsets(_read_ints(body, pos, end), kind == _DEFAULT_CHARSET, n_char)
        elif kind in (_ENUM_AND_SET_DEFAULT_CHARSET, _ENUM_AND_SET_COLUMN_CHARSET):
            enumset_charsets = _charsets(
                _read_ints(body, pos, end), kind == _ENUM_AND_SET_DEFAULT_CHARSET, n_enumset
            )
        elif kind == _COLUMN_NAME:
            names = _read_str_list(body, pos, end)
        elif kind == _ENUM_STR_VALUE:
            enum_values = _read_value_lists(body, pos, end)
        elif kind == _SET_STR_VALUE:
            set_values = _read_value_lists(body, pos, end)
        elif kind == _SIMPLE_PRIMARY_KEY:
            pk = _read_ints(body, pos, end)
        elif kind == _PRIMARY_KEY_WITH_PREFIX:
            pk = _read_ints(body, pos, end)[0::2]
        # GEOMETRY_TYPE, VISIBILITY and unknown kinds are not needed to decode rows.
        pos = end

    columns: list[ColumnSpec] = []
    numeric_i = char_i = enumset_i = enum_i = set_i = 0
    for i, (t, meta) in enumerate(zip(types, metas, strict=True)):
        unsigned = False
        collation: int | None = None
        values: tuple[str, ...] = ()
        if t in _NUMERIC:
            unsigned = numeric_i < len(unsigned_bits) and unsigned_bits[numeric_i]
            numeric_i += 1
        if t in _CHARACTER:
            collation = charsets[char_i] if char_i < len(charsets) else None
            char_i += 1
        if t in _ENUM_OR_SET:
            collation = enumset_charsets[enumset_i] if enumset_i < len(enumset_charsets) else None
            enumset_i += 1
            if t == FieldType.ENUM:
                values = enum_values[enum_i] if enum_i < len(enum_values) else ()
                enum_i += 1
            else:
                values = set_values[set_i] if set_i < len(set_values) else ()
                set_i += 1
        name = names[i] if i < len(names) else f"@{i + 1}"
        columns.append(ColumnSpec(name, t, meta, bool(nullmask >> i & 1), unsigned, collation, values))
    return TableMap(table_id, db, table, tuple(columns), tuple(pk), bool(names))
