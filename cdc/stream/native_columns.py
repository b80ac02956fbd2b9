"""A chunk's envelopes to the JSON reader's columns through the compiled ``EnvelopePlan``.

pyarrow's JSON reader was most of `cdc sink`'s decode (2.7-4.1 of 3.4-5.0 us of CPU per envelope of
the benchmark's tables; benchmarks/results/latest.md "cdc sink decode"): ``headwater_native.
EnvelopePlan`` reads the same envelopes into plain buffers with the GIL released (0.5-1.0 us), and
they become pyarrow arrays here without a further copy. It gives exactly the arrays the JSON reader
gives for the fields :mod:`cdc.stream.arrow_changes` uses (and binary columns already decoded from
their base64), or a reason it refuses the chunk (then the JSON reader, and after it the per-change
path, take it). ``tests/unit/test_sinkdecode_native.py`` compares the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from cdc.core.schemas import ArrowKind, Column, TableSchema

try:
    from headwater_native import EnvelopePlan
except ImportError as exc:  # pragma: no cover - a checkout whose setup did not build it
    raise ImportError(
        "headwater_native (the compiled decoder in native/headwater_native) is not installed: "
        "run scripts/setup.sh, or `pip install ./native/headwater_native` (needs cargo)"
    ) from exc

__all__ = ["RawChanges", "decode_envelopes"]

# the column kinds of native/headwater_native/src/envelope_columns.rs
_BOOL, _FLOAT64, _STRING, _BASE64 = 0, 9, 10, 11
_KINDS = {
    ArrowKind.BOOL: _BOOL,
    ArrowKind.INT8: 1,
    ArrowKind.INT16: 2,
    ArrowKind.INT32: 3,
    ArrowKind.INT64: 4,
    ArrowKind.UINT8: 5,
    ArrowKind.UINT16: 6,
    ArrowKind.UINT32: 7,
    ArrowKind.UINT64: 8,
    ArrowKind.FLOAT32: _FLOAT64,  # the reader's double; arrow_changes casts it as it did
    ArrowKind.FLOAT64: _FLOAT64,
    # text the JSON carries as strings: arrow_changes parses them with Arrow's kernels, as before
    ArrowKind.STRING: _STRING,
    ArrowKind.BINARY: _BASE64,  # the text, and the bytes it decodes (strictly) to
    ArrowKind.DECIMAL: _STRING,
    ArrowKind.DATE: _STRING,
    ArrowKind.TIMESTAMP: _STRING,
    ArrowKind.TIMESTAMP_UTC: _STRING,
}
_META = (pa.string(), pa.string(), pa.int64(), pa.string())  # op, position, ts_ms, gtid


@dataclass(frozen=True, slots=True)
class RawChanges:
    """A chunk's fields as the JSON reader gives them; row i is the chunk's message i."""

    op: pa.Array  # string: c, u, d, r
    position: pa.Array  # string
    source_ts_ms: pa.Array  # int64
    transaction_id: pa.Array  # string: the GTID
    image: tuple[pa.Array, ...]  # per column: after, before for a delete, in the reader's type
    # per column, the image already in the column's Arrow type where the decoder made it (binary
    # from its base64), else None (arrow_changes types it with Arrow's kernels)
    typed: tuple[pa.Array | None, ...]


@dataclass(frozen=True, slots=True)
class _Plan:
    plan: EnvelopePlan
    types: tuple[pa.DataType, ...]


_plans: dict[str, _Plan | None] = {}


def _raw_type(column: Column) -> pa.DataType:
    kind = _KINDS[column.arrow_type.kind]
    if kind in (_STRING, _BASE64):
        return pa.string()
    if kind == _FLOAT64:
        return pa.float64()
    return column.arrow_type.to_pyarrow()


def _plan(schema: TableSchema) -> _Plan | None:
    # one per table version (a version names one table shape); a few per run
    if schema.version in _plans:
        return _plans[schema.version]
    plan: _Plan | None = None
    if all(c.arrow_type.kind in _KINDS for c in schema.columns):  # no TIME: the reader has no parser
        names = [c.name for c in schema.columns]
        plan = _Plan(
            EnvelopePlan(
                names,
                [_KINDS[c.arrow_type.kind] for c in schema.columns],
                [names.index(k) for k in schema.primary_key],
                schema.version,
            ),
            (*_META, *(_raw_type(c) for c in schema.columns)),
        )
    _plans[schema.version] = plan
    return plan


def decode_envelopes(values: Sequence[bytes], schema: TableSchema) -> RawChanges | str:
    """The chunk's fields, or why the compiled decoder leaves it to the JSON reader."""
    plan = _plan(schema)
    if plan is None:
        return "a column type the columns do not decode (TIME)"
    if not values:
        return "no messages"
    decoded = plan.plan.decode(values)
    if isinstance(decoded, str):
        return decoded
    n = len(values)
    arrays = [_array(t, n, buffers) for t, buffers in zip(plan.types, decoded, strict=True)]
    typed = tuple(_decoded(n, buffers) for buffers in decoded[4:])
    return RawChanges(arrays[0], arrays[1], arrays[2], arrays[3], tuple(arrays[4:]), typed)


_Buffers = tuple[bytes | None, bytes, bytes | None, bytes | None, bytes | None]


def _array(type_: pa.DataType, n: int, buffers: _Buffers) -> pa.Array:
    validity, values, data, _, _ = buffers
    wrapped = [None if validity is None else pa.py_buffer(validity), pa.py_buffer(values)]
    if data is not None:
        wrapped.append(pa.py_buffer(data))
    return pa.Array.from_buffers(type_, n, wrapped)


def _decoded(n: int, buffers: _Buffers) -> pa.Array | None:
    validity, _, _, offsets, data = buffers
    if offsets is None or data is None:
        return None
    wrapped = [
        None if validity is None else pa.py_buffer(validity),
        pa.py_buffer(offsets),
        pa.py_buffer(data),
    ]
    return pa.Array.from_buffers(pa.binary(), n, wrapped)
