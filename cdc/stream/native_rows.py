"""Row images to JSON object bytes through the compiled ``headwater_native.RowPlan`` (see native/).

``row_plan(columns).encode(row)`` is byte for byte ``dumps(row_encoder(columns)(row))`` without the
per-row dict: the compiled part writes null, bool, 64-bit ints, valid text, bytes (base64) and
naive/UTC datetimes itself, and hands every other value to the column's fallback below, which is the
pure-Python mapping of :mod:`cdc.stream.json_values` serialized alone. The envelope encoder was 55% of
the capture daemon's time on 1000-row statements (benchmarks/results/profiles/capture_bulk.main.txt),
most of it building, converting and serializing that dict.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

try:
    from headwater_native import MessageMaker, RowPlan
except ImportError as exc:  # pragma: no cover - a checkout whose setup did not build it
    raise ImportError(
        "headwater_native (the compiled envelope encoder in native/headwater_native) is not installed: "
        "run scripts/setup.sh, or `pip install ./native/headwater_native` (needs cargo)"
    ) from exc

from cdc.core.schemas import ArrowKind, Column
from cdc.stream.json_values import column_encoder, fraction_digits, non_finite

__all__ = ["MessageMaker", "RowPlan", "dumps", "row_plan"]

# the value kinds of native/headwater_native/src/lib.rs
_AUTO, _BINARY, _DATETIME, _DATETIME_UTC, _OTHER, _DECIMAL = 0, 1, 2, 3, 4, 5
_KINDS = {
    ArrowKind.BINARY: _BINARY,
    ArrowKind.TIMESTAMP: _DATETIME,
    ArrowKind.TIMESTAMP_UTC: _DATETIME_UTC,
    ArrowKind.DECIMAL: _DECIMAL,
    ArrowKind.DATE: _OTHER,
    ArrowKind.DURATION: _OTHER,
}


def _fix_text(obj: Any) -> Any:
    """Replace surrogate escapes (invalid source text) with U+FFFD, recursively; the slow path."""
    if isinstance(obj, str):
        return obj.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if isinstance(obj, dict):
        return {_fix_text(k): _fix_text(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_fix_text(v) for v in obj]
    return obj


def dumps(obj: Any) -> bytes:
    """UTF-8 JSON; non-str dict keys are refused; text with surrogate escapes goes the slow path."""
    try:
        return orjson.dumps(obj)
    except orjson.JSONEncodeError:
        return orjson.dumps(_fix_text(obj))


def _float(value: Any) -> bytes:
    # orjson itself (a float never needs dumps' text fix): one call per value, as before the fix
    out = orjson.dumps(value)
    # orjson writes NaN and ±Infinity as null (None never gets here): the strings json_values uses
    return out if out != b"null" else orjson.dumps(non_finite(value))


def _fallback(column: Column) -> Callable[[Any], bytes]:
    if column.arrow_type.kind in (ArrowKind.FLOAT32, ArrowKind.FLOAT64):
        return _float  # one serialization per value, as before; the check is a bytes compare
    encoder = column_encoder(column)
    if encoder is None:
        return dumps

    def encode(value: Any) -> bytes:
        return dumps(encoder(value))

    return encode


def row_plan(columns: tuple[Column, ...]) -> RowPlan:
    """The compiled encoder of row images aligned with ``columns`` (one per table schema version)."""
    heads = [(b"{" if i == 0 else b",") + dumps(c.name) + b":" for i, c in enumerate(columns)]
    kinds = [_KINDS.get(c.arrow_type.kind, _AUTO) for c in columns]
    fsps = [
        fraction_digits(c) if k in (_DATETIME, _DATETIME_UTC) else 0
        for c, k in zip(columns, kinds, strict=True)
    ]
    return RowPlan(heads, kinds, fsps, [_fallback(c) for c in columns])
