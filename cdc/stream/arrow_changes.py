"""A poll's envelopes of one table version as Arrow columns: no Python object per change.

The per-change way back (:mod:`cdc.stream.json_decode`, one orjson parse, one row tuple, one
``Position`` and one ``ChangeEvent`` per message) costs ~30 us of CPU per change in `cdc sink`; the
sinks' targets leave under 7. Here the message values of one partition are read by the compiled
decoder (:mod:`cdc.stream.native_columns`: pyarrow's JSON reader was most of this module's time, 2.7-4.1
of 3.4-5.0 us per envelope) or, where it refuses a chunk, joined with newlines and parsed by pyarrow's
JSON reader under an explicit schema built from the table version; both give the same arrays, and
each column is turned into its source Arrow type by Arrow kernels.

It gives the SAME values as the per-change path, or nothing: :func:`change_columns` returns None
(the caller takes the per-change path) for anything it cannot decode exactly - several table
versions in one chunk, a truncate, an update of a keyless table or one that moves its key (the
history splits those into two rows), a TIME column, a value the reader or a cast refuses (a zero
date kept as text, a non-finite float spelled as a string, text in a binary column that is not
strict base64). ``tests/unit/test_sinkcol_columns.py`` decodes the same envelopes both ways.
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from cdc.core.schemas import ArrowKind, Column, TableSchema
from cdc.stream.native_columns import RawChanges, decode_envelopes

__all__ = ["INT_KINDS", "ChangeColumns", "change_columns", "chunk_version"]

INT_KINDS = frozenset(
    {
        ArrowKind.INT8,
        ArrowKind.INT16,
        ArrowKind.INT32,
        ArrowKind.INT64,
        ArrowKind.UINT8,
        ArrowKind.UINT16,
        ArrowKind.UINT32,
        ArrowKind.UINT64,
    }
)
# read as JSON text, then cast by Arrow's own parser (exact: a refusal sends the chunk the slow way)
_CAST_FROM_TEXT = {ArrowKind.DECIMAL, ArrowKind.DATE, ArrowKind.TIMESTAMP, ArrowKind.TIMESTAMP_UTC}
_OPS = pa.array(["c", "u", "d", "r"], pa.string())
_BASE64 = r"^[A-Za-z0-9+/]*={0,2}$"
_SOURCE = pa.struct(
    [
        pa.field("position", pa.string()),
        pa.field("ts_ms", pa.int64()),
        pa.field("gtid", pa.string()),
        pa.field("schema_version", pa.string()),
    ]
)


@dataclass(frozen=True, slots=True)
class ChangeColumns:
    """The changes of one chunk, column-wise; row i of every array is the chunk's message i."""

    schema: TableSchema
    op: pa.Array  # string: c, u, d, r (never t)
    position: pa.Array  # string: Position.to_string(), which sorts like the positions
    source_ts_ms: pa.Array  # int64
    transaction_id: pa.Array  # string: the GTID
    # the row image each change leaves (after; before for a delete), one array per source column in
    # the column's source Arrow type (ArrowType.to_pyarrow)
    image: tuple[pa.Array, ...]
    # the same image as the JSON reader gave it (text for decimals, dates, times and base64 binary):
    # PostgreSQL parses those texts to the very values, so a COPY can send them as they came
    json_image: tuple[pa.Array, ...]

    def __len__(self) -> int:
        return len(self.op)


def chunk_version(first_value: bytes) -> str | None:
    """The table version the chunk's first envelope names (one parse of one message)."""
    try:
        version = orjson.loads(first_value)["source"]["schema_version"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return version if isinstance(version, str) else None


def _json_type(column: Column) -> pa.DataType | None:
    kind = column.arrow_type.kind
    if kind in INT_KINDS or kind is ArrowKind.BOOL:
        return column.arrow_type.to_pyarrow()
    if kind in (ArrowKind.FLOAT32, ArrowKind.FLOAT64):
        return pa.float64()  # "NaN"/"Infinity" strings make the reader refuse: the slow path has them
    if kind in _CAST_FROM_TEXT or kind in (ArrowKind.STRING, ArrowKind.BINARY):
        return pa.string()
    return None  # DURATION: "-838:59:59" has no Arrow parser


def _read_schema(schema: TableSchema) -> pa.Schema | None:
    fields = []
    for column in schema.columns:
        json_type = _json_type(column)
        if json_type is None:
            return None
        fields.append(pa.field(column.name, json_type))
    row = pa.struct(fields)
    return pa.schema(
        [
            pa.field("before", row),
            pa.field("after", row),
            pa.field("op", pa.string()),
            pa.field("source", _SOURCE),
        ]
    )


@dataclass(frozen=True, slots=True)
class _Shape:
    """What a table version's chunks are read with, built once per version: the JSON reader's
    schema, and each column's source Arrow type (``ArrowType.to_pyarrow`` builds its table of types
    on every call; per chunk it was 5-6% of change_columns under cProfile, within noise of the
    measured us per change with 2,500-change chunks, more of a small chunk's)."""

    read_schema: pa.Schema
    targets: tuple[pa.DataType, ...]


_shapes: dict[str, _Shape | None] = {}  # a version names one table shape (as native_columns' plans)


def _shape(schema: TableSchema) -> _Shape | None:
    if schema.version in _shapes:
        return _shapes[schema.version]
    read_schema = _read_schema(schema)
    shape = None
    if read_schema is not None:
        shape = _Shape(read_schema, tuple(c.arrow_type.to_pyarrow() for c in schema.columns))
    _shapes[schema.version] = shape
    return shape


def change_columns(values: Sequence[bytes], schema: TableSchema) -> ChangeColumns | None:
    """``values`` (envelopes of ``schema``'s table) as columns; None when not exactly decodable."""
    shape = _shape(schema)
    if shape is None or not values:
        return None
    raw = decode_envelopes(values, schema)  # compiled; the JSON reader where it refuses
    if isinstance(raw, str):
        json_raw = _json_changes(values, schema, shape.read_schema)
        if json_raw is None:
            return None
        raw = json_raw
    images = []
    for column, target, values_read, decoded in zip(
        schema.columns, shape.targets, raw.image, raw.typed, strict=True
    ):
        typed = decoded if decoded is not None else _typed(values_read, column, target)
        if typed is None:
            return None
        images.append(typed)
    return ChangeColumns(
        schema, raw.op, raw.position, raw.source_ts_ms, raw.transaction_id, tuple(images), raw.image
    )


def _json_changes(values: Sequence[bytes], schema: TableSchema, read_schema: pa.Schema) -> RawChanges | None:
    """The chunk's fields read by pyarrow's JSON reader (what the compiled decoder must equal)."""
    data = b"\n".join(values)
    try:
        table = pj.read_json(
            pa.py_buffer(data),
            read_options=pj.ReadOptions(use_threads=False, block_size=len(data) + 1),
            parse_options=pj.ParseOptions(explicit_schema=read_schema, unexpected_field_behavior="ignore"),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != len(values):
        return None
    if any(column.num_chunks != 1 for column in table.columns):
        table = table.combine_chunks()  # one block holds the whole input: not expected
    source = table.column("source").chunk(0)
    if source.null_count:
        return None
    position, ts_ms, gtid, version = (source.field(i) for i in range(4))
    if version.null_count or position.null_count or ts_ms.null_count or gtid.null_count:
        return None
    if not pc.all(pc.equal(version, schema.version)).as_py():
        return None  # several table versions: each change takes its own schema the slow way
    op = table.column("op").chunk(0)
    if op.null_count or not pc.all(pc.is_in(op, value_set=_OPS)).as_py():
        return None  # a truncate (its 't' row is recorded once per truncate), or an unknown op
    before, after = table.column("before").chunk(0), table.column("after").chunk(0)
    if not _single_row_updates(schema, op, before, after):
        return None
    is_delete = pc.equal(op, "d")
    image_valid = pc.if_else(is_delete, before.is_valid(), after.is_valid())
    if not pc.all(image_valid).as_py():
        return None
    deletes = pc.any(is_delete).as_py()
    raws = []
    for i in range(len(schema.columns)):
        raws.append(after.field(i) if not deletes else pc.if_else(is_delete, before.field(i), after.field(i)))
    return RawChanges(op, position, ts_ms, gtid, tuple(raws), (None,) * len(raws))


def _single_row_updates(schema: TableSchema, op: pa.Array, before: pa.Array, after: pa.Array) -> bool:
    """Whether every update keeps its key (the history stores a key move, or any update of a
    keyless table, as a 'd' and a 'u' row: the slow path does that)."""
    is_update = pc.equal(op, "u")
    if not pc.any(is_update).as_py():
        return True
    if not schema.primary_key:
        return False
    names = [c.name for c in schema.columns]
    for key in schema.primary_key:
        i = names.index(key)
        # the JSON forms compare like the values (one exact text per value); a missing before
        # image (null) cannot move a key
        moved = pc.and_kleene(is_update, pc.not_equal(before.field(i), after.field(i)))
        if pc.any(moved.fill_null(False)).as_py():
            return False
    return True


def _typed(raw: pa.Array, column: Column, target: pa.DataType) -> pa.Array | None:
    """A column's JSON-read values in its source Arrow type (``target``), exactly as json_decode
    gives them."""
    kind = column.arrow_type.kind
    try:
        if kind is ArrowKind.BINARY:
            return _base64_decoded(raw)
        if raw.type == target:
            return raw
        if kind is ArrowKind.FLOAT32:
            return raw.cast(target, safe=False)  # float32(double): the rounding pa.array applies
        return raw.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _base64_decoded(text: pa.Array) -> pa.Array | None:
    """Strict, padded base64 text (what json_values writes) decoded, in one binascii call.

    Every value's length is a multiple of 4, so with its padding made 'A' the values' concatenation
    is one base64 text: decoded at once, each value is 3/4 of its length, less one byte per '='.
    Anything else (a str a binary column held, sent as is) returns None: binascii's lenient
    per-value decoding is the slow path's to reproduce."""
    n = len(text)
    if n == 0:
        return pa.array([], pa.binary())
    length = pc.binary_length(text)
    valid = pc.and_(
        pc.match_substring_regex(text, _BASE64), pc.equal(pc.bit_wise_and(length, 3), 0)
    ).fill_null(True)
    if not pc.all(valid).as_py():
        return None
    pad = pc.subtract(length, pc.binary_length(pc.replace_substring(text, "=", ""))).fill_null(0)
    filled = pc.replace_substring(text, "=", "A")
    if filled.offset:
        filled = pa.concat_arrays([filled])  # offsets from zero
    _validity, offsets_buffer, data_buffer = filled.buffers()
    offsets = pa.Array.from_buffers(pa.int32(), n + 1, [None, offsets_buffer])
    first, last = offsets[0].as_py(), offsets[n].as_py()
    decoded = binascii.a2b_base64(memoryview(data_buffer)[first:last]) if last > first else b""
    out_offsets = pc.multiply(pc.divide(pc.subtract(offsets, first), 4), 3).cast(pa.int32())
    whole = pa.Array.from_buffers(pa.binary(), n, [None, out_offsets.buffers()[1], pa.py_buffer(decoded)])
    trimmed: Any = pc.case_when(
        pc.make_struct(pc.equal(pad, 2), pc.equal(pad, 1)),
        pc.binary_slice(whole, 0, -2),
        pc.binary_slice(whole, 0, -1),
        whole,
    )
    if text.null_count:
        trimmed = pc.if_else(text.is_valid(), trimmed, pa.scalar(None, pa.binary()))
    result: pa.Array = trimmed
    return result
