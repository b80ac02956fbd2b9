"""Row images straight from rows-event bytes, with a decoder generated once per table shape.

python-mysql-replication interprets every column of every row through generic dispatch and re-parses
each TABLE_MAP; that is where its time goes. Here a TABLE_MAP is compiled once (cached by its exact
bytes, which include the table id) into Python source specialised for that column list: one straight
line of slicing and ``struct`` unpacking per column, the null checks only where a column is nullable.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from cdc.core.errors import UnsupportedColumnType
from cdc.core.events import RowImage
from cdc.sources.mariadb.binlog_format import FieldType as T
from cdc.sources.mariadb.table_map import ColumnSpec, TableMap
from cdc.sources.mariadb.value_codecs import (
    ZeroDatePolicy,
    decimal_size,
    format_inet4,
    format_inet6,
    format_uuid,
    make_date,
    make_datetime2,
    make_decimal,
    make_time2,
    make_timestamp2,
    python_codec,
)

__all__ = ["DecoderOptions", "RowsDecoder", "compile_rows_decoder"]

RowsFunction = Callable[[bytes, int, int], list[RowImage]]
UpdatesFunction = Callable[[bytes, int, int], list[tuple[RowImage, RowImage]]]
CharsetOf = Callable[[int], str]

_STRUCTS = {
    "I16": struct.Struct("<h").unpack_from,
    "U16": struct.Struct("<H").unpack_from,
    "I32": struct.Struct("<i").unpack_from,
    "U32": struct.Struct("<I").unpack_from,
    "I64": struct.Struct("<q").unpack_from,
    "U64": struct.Struct("<Q").unpack_from,
    "F32": struct.Struct("<f").unpack_from,
    "F64": struct.Struct("<d").unpack_from,
}
_BLOB_LIKE = frozenset({T.BLOB, T.TINY_BLOB, T.MEDIUM_BLOB, T.LONG_BLOB})


@dataclass(frozen=True)
class DecoderOptions:
    zero_dates: ZeroDatePolicy = ZeroDatePolicy.NULL
    # MariaDB's UUID/INET4/INET6 reach the binlog as BINARY(16)/BINARY(4)/BINARY(16); only the data
    # dictionary knows better. Column name -> "uuid" | "inet4" | "inet6", looked up by the reader.
    extended_types: tuple[tuple[str, str], ...] = ()


@dataclass
class _Gen:
    """Accumulates generated source lines and the helper objects they reference."""

    env: dict[str, object] = field(default_factory=lambda: dict(_STRUCTS))
    lines: list[str] = field(default_factory=list)

    def helper(self, obj: object) -> str:
        name = f"h{len(self.env)}"
        self.env[name] = obj
        return name

    def emit(self, indent: int, *lines: str) -> None:
        self.lines.extend(" " * indent + line for line in lines)


def _length_prefix(size: int, var: str = "n") -> str:
    if size == 1:
        return f"{var} = d[p]"
    if size == 2:
        return f"{var} = U16(d, p)[0]"
    if size == 4:
        return f"{var} = U32(d, p)[0]"
    return f"{var} = int.from_bytes(d[p:p + {size}], 'little')"


def _column_code(
    g: _Gen, tm: TableMap, col: ColumnSpec, charset_of: CharsetOf, opts: DecoderOptions, extended: str | None
) -> list[str]:
    """Statements that decode one non-NULL value at ``p`` into ``v`` and advance ``p``."""
    t, meta, where = col.type_code, col.meta, (tm.db, tm.table, col.name)

    def unsupported(type_name: str) -> UnsupportedColumnType:
        return UnsupportedColumnType(tm.db, tm.table, col.name, type_name)

    def text_decoder() -> Callable[[bytes], str] | None:
        if col.collation is None:
            raise unsupported(f"type {t} without charset metadata (binlog_row_metadata must be FULL)")
        try:
            charset = charset_of(col.collation)
            return python_codec(charset)
        except (LookupError, KeyError) as exc:
            raise unsupported(f"character set of collation {col.collation}") from exc

    if t == T.TINY:
        return ["v = d[p]", "p += 1"] + ([] if col.unsigned else ["if v > 127: v -= 256"])
    if t in (T.SHORT, T.LONG, T.LONGLONG):
        width = {T.SHORT: 2, T.LONG: 4, T.LONGLONG: 8}[t]
        unpack = ("U" if col.unsigned else "I") + str(width * 8)
        return [f"v = {unpack}(d, p)[0]", f"p += {width}"]
    if t == T.INT24:
        code = ["v = d[p] | d[p + 1] << 8 | d[p + 2] << 16", "p += 3"]
        return code + ([] if col.unsigned else ["if v & 0x800000: v -= 0x1000000"])
    if t == T.FLOAT:
        return ["v = F32(d, p)[0]", "p += 4"]
    if t == T.DOUBLE:
        return ["v = F64(d, p)[0]", "p += 8"]
    if t == T.NEWDECIMAL:
        precision, scale = meta >> 8, meta & 0xFF
        size = decimal_size(precision, scale)
        h = g.helper(make_decimal(precision, scale))
        return [f"v = {h}(d[p:p + {size}])", f"p += {size}"]
    if t == T.YEAR:
        return ["v = d[p]", "p += 1", "v = v + 1900 if v else 0"]
    if t == T.DATE:
        h = g.helper(make_date(opts.zero_dates, where))
        return [f"v = {h}(d[p] | d[p + 1] << 8 | d[p + 2] << 16)", "p += 3"]
    if t in (T.DATETIME2, T.TIMESTAMP2, T.TIME2):
        base = {T.DATETIME2: 5, T.TIMESTAMP2: 4, T.TIME2: 3}[t]
        size = base + (meta + 1) // 2
        if t == T.DATETIME2:
            fn: object = make_datetime2(meta, opts.zero_dates, where)
        elif t == T.TIMESTAMP2:
            fn = make_timestamp2(meta, opts.zero_dates, where)
        else:
            fn = make_time2(meta)
        h = g.helper(fn)
        return [f"v = {h}(d[p:p + {size}])", f"p += {size}"]
    if t == T.BIT:
        size = (meta & 0xFF) + (1 if meta >> 8 else 0)
        return [f"v = int.from_bytes(d[p:p + {size}], 'big')", f"p += {size}"]
    if t in (T.VARCHAR, T.VAR_STRING):
        prefix = 1 if meta < 256 else 2
        dec = text_decoder()
        value = f"d[p + {prefix}:p + {prefix} + n]"
        return [
            _length_prefix(prefix),
            f"v = {g.helper(dec)}({value})" if dec else f"v = {value}",
            f"p += {prefix} + n",
        ]
    if t == T.STRING:
        prefix = 1 if meta < 256 else 2
        dec = text_decoder()
        value = f"d[p + {prefix}:p + {prefix} + n]"
        code = [_length_prefix(prefix)]
        if dec is not None:
            code.append(f"v = {g.helper(dec)}({value})")
        else:
            # BINARY(n) values are logged without their trailing zero bytes; put them back.
            code += [f"v = {value}", f"if n < {meta}: v += bytes({meta} - n)"]
            if extended is not None:
                fmt = {"uuid": format_uuid, "inet4": format_inet4, "inet6": format_inet6}[extended]
                code.append(f"v = {g.helper(fmt)}(v)")
        return [*code, f"p += {prefix} + n"]
    if t in _BLOB_LIKE or t == T.GEOMETRY:
        if not 1 <= meta <= 4:
            raise unsupported(f"blob with {meta}-byte length")
        start = f"p + {meta} + 4" if t == T.GEOMETRY else f"p + {meta}"  # geometry: skip the SRID
        dec = text_decoder() if t != T.GEOMETRY else None
        value = f"d[{start}:p + {meta} + n]"
        return [
            _length_prefix(meta),
            f"v = {g.helper(dec)}({value})" if dec else f"v = {value}",
            f"p += {meta} + n",
        ]
    if t == T.ENUM:
        table = ("", *col.values)
        h = g.helper(table)
        return [_length_prefix(meta, "x"), f"v = {h}[x] if x < {len(table)} else ''", f"p += {meta}"]
    if t == T.SET:
        names = col.values

        def set_text(bits: int, names: tuple[str, ...] = names) -> str:
            return ",".join(name for i, name in enumerate(names) if bits >> i & 1)

        h = g.helper(set_text)
        return [f"v = {h}(int.from_bytes(d[p:p + {meta}], 'little'))", f"p += {meta}"]
    if t == T.TIMESTAMP:  # pre-5.6 format (mysql56_temporal_format=OFF): seconds, no fraction
        h = g.helper(make_timestamp2(0, opts.zero_dates, where))
        return [f"v = {h}(d[p:p + 4][::-1])", "p += 4"]
    type_names = {
        T.JSON: "json (binary)",
        T.BLOB_COMPRESSED: "compressed blob",
        T.DECIMAL: "old decimal",
        T.VARCHAR_COMPRESSED: "compressed varchar",
        T.DATETIME: "old datetime",
        T.TIME: "old time",
    }
    raise unsupported(type_names.get(t, f"binlog type {t}"))


def _image_code(
    g: _Gen, tm: TableMap, charset_of: CharsetOf, opts: DecoderOptions, out: str, indent: int
) -> None:
    """One full row image (binlog_row_image=FULL: every column present; the stream decoder refuses
    partial images before they get here)."""
    null_bytes = (len(tm.columns) + 7) // 8
    extended = dict(opts.extended_types)
    g.emit(indent, f"nb = int.from_bytes(d[p:p + {null_bytes}], 'little')", f"p += {null_bytes}")
    values = ["None"] * len(tm.columns)
    for i, col in enumerate(tm.columns):
        code = _column_code(g, tm, col, charset_of, opts, extended.get(col.name))
        if col.nullable:
            g.emit(indent, f"if nb & {1 << i}:", "    v = None", "else:")
            g.emit(indent + 4, *code)
        else:
            g.emit(indent, *code)
        g.emit(indent, f"v{i} = v")
        values[i] = f"v{i}"
    g.emit(indent, f"{out} = ({', '.join(values)},)")


@dataclass(frozen=True)
class RowsDecoder:
    """Decoders for one table shape; rows are read between ``pos`` and ``end`` of an event body."""

    table_map: TableMap
    source: str  # the generated code, kept for debugging and tests
    decode_rows: RowsFunction  # write and delete events: one image per row
    decode_updates: UpdatesFunction  # update events: (before, after) per row


def compile_rows_decoder(
    tm: TableMap, charset_of: CharsetOf, opts: DecoderOptions | None = None
) -> RowsDecoder:
    """Generate and compile the decoders for full row images."""
    opts = opts or DecoderOptions()
    g = _Gen()
    g.emit(0, "def decode_rows(d, p, end):", "    out = []", "    append = out.append", "    while p < end:")
    _image_code(g, tm, charset_of, opts, "row", 8)
    g.emit(
        0,
        "        append(row)",
        "    return out",
        "",
        "def decode_updates(d, p, end):",
        "    out = []",
        "    append = out.append",
        "    while p < end:",
    )
    _image_code(g, tm, charset_of, opts, "before", 8)
    _image_code(g, tm, charset_of, opts, "after", 8)
    g.emit(0, "        append((before, after))", "    return out")
    source = "\n".join(g.lines) + "\n"
    namespace = dict(g.env)
    # The source is generated above from the table map; names and values never reach it as code.
    exec(compile(source, f"<rows decoder {tm.db}.{tm.table}>", "exec"), namespace)
    return RowsDecoder(tm, source, namespace["decode_rows"], namespace["decode_updates"])  # type: ignore[arg-type]
