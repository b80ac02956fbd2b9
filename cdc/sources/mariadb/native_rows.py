"""The compiled row decoder's plan (``headwater_native.RowsPlan``) for one TABLE_MAP.

Also the maker of a rows event's ChangeEvents (``EVENT_MAKER``, below).

The generated Python of :mod:`cdc.sources.mariadb.row_decoder` spent ~4-5 us a row on 1000-row
statements: half of the capture daemon's CPU on one core (issue 11). The compiled plan reads the same
bytes in a loop and builds the same tuples; it makes integers, floats, YEAR, BIT, valid UTF-8 text and
binary strings itself and hands every other value's bytes to the same helper the generated code
calls (value_codecs), so the two cannot differ on what it does not understand. The Python decoder
stays the reference: a unit test decodes the same images both ways.
"""

from __future__ import annotations

from cdc.core.events import ChangeEvent, TransactionEnd
from cdc.core.positions import Gtid, Position
from cdc.sources.mariadb.binlog_format import FieldType as T
from cdc.sources.mariadb.row_decoder import (
    _BLOB_LIKE,
    CharsetOf,
    DecoderOptions,
    RowsFunction,
    UpdatesFunction,
)
from cdc.sources.mariadb.table_map import ColumnSpec, TableMap
from cdc.sources.mariadb.value_codecs import (
    _decode_utf8,
    _frac_scale,
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

try:
    from headwater_native import EventMaker, RowsPlan
except ImportError as exc:  # pragma: no cover - a checkout whose setup did not build it
    raise ImportError(
        "headwater_native (native/headwater_native) is not installed or predates RowsPlan: run "
        "scripts/setup.sh, or `pip install ./native/headwater_native` (needs cargo)"
    ) from exc

__all__ = ["EVENT_MAKER", "native_decoders", "rows_plan"]

# The ChangeEvents (and their Positions) of a write or delete rows event, in one call: building them
# in Python (a frozen dataclass __init__ and Position.at_row per row) was the other half of the
# decoder's time. ``EVENT_MAKER.changes(op, schema, key_indexes, inserted, images, tx_pos, row,
# ts_ms, transaction_id)`` gives what ``ChangeEvent(op, schema, key_of(image), .., tx_pos.at_row(r),
# ts_ms, transaction_id)`` gives for each image, rows numbered from ``row``. Also a transaction's
# start (``transaction_start``: its Gtid, Position and id) and end (``transaction_end``).
EVENT_MAKER = EventMaker(ChangeEvent, Position, Gtid, TransactionEnd)

# the column kinds of native/headwater_native/src/rows.rs
INT_U, INT_S, F32, F64, YEAR, BIT = 0, 1, 2, 3, 4, 5
TEXT_UTF8, TEXT_HELPER, BYTES, BINARY = 6, 7, 8, 9
FIXED_HELPER, INT_HELPER, REVERSED_HELPER, ENUM, DATETIME2 = 10, 11, 12, 13, 14
TEXT_LATIN1, DECIMAL_BIN = 15, 16

Spec = tuple[int, int, int, bool, object]
_EXTENDED = {"uuid": format_uuid, "inet4": format_inet4, "inet6": format_inet6}
_INT_WIDTH = {T.TINY: 1, T.SHORT: 2, T.INT24: 3, T.LONG: 4, T.LONGLONG: 8}


def _text(col: ColumnSpec, charset_of: CharsetOf, prefix: int, skip: int = 0) -> Spec:
    # the generated decoder already refused a text column without a usable charset
    assert col.collation is not None
    charset = charset_of(col.collation)
    dec = python_codec(charset)
    if dec is None:
        return (BYTES, prefix, skip, col.nullable, None)
    if dec is _decode_utf8:
        return (TEXT_UTF8, prefix, 0, col.nullable, dec)
    if charset == "latin1":
        # ASCII values natively (the same in every Latin-1 variant), the rest by the helper: one
        # Python call per latin1 value was 4 of the reading thread's 38 profiled s (bulk capture)
        return (TEXT_LATIN1, prefix, 0, col.nullable, dec)
    return (TEXT_HELPER, prefix, 0, col.nullable, dec)


def _column(
    tm: TableMap, col: ColumnSpec, charset_of: CharsetOf, opts: DecoderOptions, extended: str | None
) -> Spec:
    """One column's (kind, size, extra, nullable, helper), as row_decoder._column_code decodes it."""
    t, meta, n, where = col.type_code, col.meta, col.nullable, (tm.db, tm.table, col.name)
    if t in _INT_WIDTH:
        return (INT_U if col.unsigned else INT_S, _INT_WIDTH[t], 0, n, None)
    if t == T.FLOAT:
        return (F32, 4, 0, n, None)
    if t == T.DOUBLE:
        return (F64, 8, 0, n, None)
    if t == T.NEWDECIMAL:
        precision, scale = meta >> 8, meta & 0xFF
        size, decode = decimal_size(precision, scale), make_decimal(precision, scale)
        if precision <= 38:  # made natively (the helper's Python was ~1.5 us a value); wider ones by it
            return (DECIMAL_BIN, size, precision << 8 | scale, n, decode)
        return (FIXED_HELPER, size, 0, n, decode)
    if t == T.YEAR:
        return (YEAR, 1, 0, n, None)
    if t == T.DATE:
        return (INT_HELPER, 3, 0, n, make_date(opts.zero_dates, where))
    if t in (T.DATETIME2, T.TIMESTAMP2, T.TIME2):
        size = {T.DATETIME2: 5, T.TIMESTAMP2: 4, T.TIME2: 3}[t] + (meta + 1) // 2
        if t == T.DATETIME2:
            # made natively when valid; zero and invalid dates go to the helper (the zero-date policy)
            return (DATETIME2, size, _frac_scale(meta), n, make_datetime2(meta, opts.zero_dates, where))
        if t == T.TIMESTAMP2:
            fn: object = make_timestamp2(meta, opts.zero_dates, where)
        else:
            fn = make_time2(meta)
        return (FIXED_HELPER, size, 0, n, fn)
    if t == T.BIT:
        return (BIT, (meta & 0xFF) + (1 if meta >> 8 else 0), 0, n, None)
    if t in (T.VARCHAR, T.VAR_STRING):
        return _text(col, charset_of, 1 if meta < 256 else 2)
    if t == T.STRING:
        prefix = 1 if meta < 256 else 2
        spec = _text(col, charset_of, prefix)
        if spec[0] != BYTES:
            return spec
        return (BINARY, prefix, meta, n, None if extended is None else _EXTENDED[extended])
    if t == T.GEOMETRY:
        return (BYTES, meta, 4, n, None)
    if t in _BLOB_LIKE:
        return _text(col, charset_of, meta)
    if t == T.ENUM:
        return (ENUM, meta, 0, n, ("", *col.values))
    if t == T.SET:
        names = col.values

        def set_text(bits: int, names: tuple[str, ...] = names) -> str:
            return ",".join(name for i, name in enumerate(names) if bits >> i & 1)

        return (INT_HELPER, meta, 0, n, set_text)
    if t == T.TIMESTAMP:
        return (REVERSED_HELPER, 4, 0, n, make_timestamp2(0, opts.zero_dates, where))
    raise AssertionError(f"type {t} passed the generated decoder but has no compiled kind")


def rows_plan(tm: TableMap, charset_of: CharsetOf, opts: DecoderOptions) -> RowsPlan:
    """The compiled plan for full row images (its ``decode_rows`` and ``decode_updates``; the
    compiled event loop reads rows with it too). Call after the generated decoder was built: that
    refuses the column types neither supports, naming them."""
    extended = dict(opts.extended_types)
    return RowsPlan([_column(tm, c, charset_of, opts, extended.get(c.name)) for c in tm.columns])


def native_decoders(
    tm: TableMap, charset_of: CharsetOf, opts: DecoderOptions
) -> tuple[RowsFunction, UpdatesFunction]:
    """``(decode_rows, decode_updates)`` of :func:`rows_plan`."""
    plan = rows_plan(tm, charset_of, opts)
    return plan.decode_rows, plan.decode_updates
