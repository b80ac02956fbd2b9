"""The compiled row decoder (headwater_native.RowsPlan, planned by native_rows.py) against the generated
Python decoder it replaced in the stream decoder: the same row-image bytes give the same tuples, value
for value and type for type (compared by repr: 1, 1.0 and True differ there). And the compiled maker
of a rows event's ChangeEvents (EVENT_MAKER) against ChangeEvent(...) with Position.at_row."""

from __future__ import annotations

import random

import pytest
from headwater_native import RowsPlan

from cdc.core.events import ChangeEvent, Op
from cdc.core.positions import Gtid, GtidState, Position, ReadContext
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from cdc.sources.mariadb.binlog_format import FieldType as T
from cdc.sources.mariadb.compiled_table import key_getter
from cdc.sources.mariadb.native_rows import EVENT_MAKER, native_decoders
from cdc.sources.mariadb.row_decoder import DecoderOptions, compile_rows_decoder
from cdc.sources.mariadb.table_map import ColumnSpec, TableMap
from cdc.sources.mariadb.value_codecs import ZeroDatePolicy, decimal_size

# collation id -> charset, as information_schema.collations gives them
CHARSETS = {45: "utf8mb4", 33: "utf8mb3", 8: "latin1", 63: "binary", 28: "gbk"}


def _columns() -> list[ColumnSpec]:
    c = ColumnSpec
    cols = [
        c("ti", T.TINY, 0, True),
        c("tiu", T.TINY, 0, False, unsigned=True),
        c("si", T.SHORT, 0, True),
        c("siu", T.SHORT, 0, True, unsigned=True),
        c("mi", T.INT24, 0, True),
        c("miu", T.INT24, 0, True, unsigned=True),
        c("i", T.LONG, 0, False),
        c("iu", T.LONG, 0, True, unsigned=True),
        c("bi", T.LONGLONG, 0, True),
        c("biu", T.LONGLONG, 0, False, unsigned=True),
        c("f", T.FLOAT, 4, True),
        c("d", T.DOUBLE, 8, True),
        c("dec", T.NEWDECIMAL, 12 << 8 | 2, True),
        c("dec0", T.NEWDECIMAL, 20 << 8 | 0, True),
        c("dec_frac", T.NEWDECIMAL, 10 << 8 | 10, True),  # no integer digits
        c("dec38", T.NEWDECIMAL, 38 << 8 | 17, True),  # the widest made natively
        c("dec65", T.NEWDECIMAL, 65 << 8 | 30, True),  # wider: the helper
        c("y", T.YEAR, 0, True),
        c("dt", T.DATE, 0, True),
        c("dt0", T.DATETIME2, 0, True),
        c("dt6", T.DATETIME2, 6, False),
        c("dt1", T.DATETIME2, 1, True),
        c("dt3", T.DATETIME2, 3, True),
        c("ts3", T.TIMESTAMP2, 3, True),
        c("tm2", T.TIME2, 2, True),
        c("tm5", T.TIME2, 5, True),
        c("old_ts", T.TIMESTAMP, 0, True),
        c("bit", T.BIT, 2 << 8 | 3, True),
        c("vc", T.VARCHAR, 200, True, collation=45),
        c("vc_long", T.VARCHAR, 1000, True, collation=33),
        c("vc_latin1", T.VARCHAR, 50, True, collation=8),
        c("vc_gbk", T.VARCHAR, 50, True, collation=28),
        c("vb", T.VARCHAR, 300, True, collation=63),
        c("ch", T.STRING, 40, True, collation=45),
        c("bin", T.STRING, 16, True, collation=63),
        c("uuid", T.STRING, 16, True, collation=63),
        c("ip4", T.STRING, 4, True, collation=63),
        c("blob", T.BLOB, 2, True, collation=63),
        c("text", T.BLOB, 3, True, collation=45),
        c("text_latin1", T.BLOB, 2, True, collation=8),  # natively when ASCII, else the helper
        c("geo", T.GEOMETRY, 4, True, collation=63),
        c("e", T.ENUM, 1, True, collation=45, values=("a", "b", "c")),
        c("s", T.SET, 1, True, collation=45, values=("x", "y", "z")),
    ]
    return cols


def _text(rng: random.Random) -> bytes:
    pick = rng.randrange(4)
    if pick == 0:
        return bytes(rng.randrange(32, 127) for _ in range(rng.randrange(12)))
    if pick == 1:
        return "".join(rng.choice('aé€😀\n"\\') for _ in range(rng.randrange(6))).encode()
    return bytes(rng.randrange(256) for _ in range(rng.randrange(10)))  # often not valid UTF-8


def _value(rng: random.Random, col: ColumnSpec) -> bytes:
    """Random bytes for one non-NULL value, shaped as the binlog writes the column."""
    t, meta = col.type_code, col.meta
    fixed = {T.TINY: 1, T.SHORT: 2, T.INT24: 3, T.LONG: 4, T.LONGLONG: 8, T.FLOAT: 4, T.DOUBLE: 8}
    fixed |= {T.YEAR: 1, T.DATE: 3, T.TIMESTAMP: 4}
    if t in fixed:
        return rng.randbytes(fixed[t])
    if t == T.NEWDECIMAL:
        return rng.randbytes(decimal_size(meta >> 8, meta & 0xFF))
    if t == T.DATETIME2 and rng.random() < 0.6:  # a valid one (random bytes mostly are not)
        y, mo, d = rng.randrange(1, 10000), rng.randrange(1, 13), rng.randrange(1, 29)
        h, mi, s = rng.randrange(24), rng.randrange(60), rng.randrange(60)
        packed = ((y * 13 + mo) << 5 | d) << 17 | h << 12 | mi << 6 | s
        frac = rng.randrange(10 ** ((meta + 1) // 2 * 2)) if meta else 0
        return (packed + 0x8000000000).to_bytes(5, "big") + frac.to_bytes((meta + 1) // 2, "big")
    if t in (T.DATETIME2, T.TIMESTAMP2, T.TIME2):
        return rng.randbytes({T.DATETIME2: 5, T.TIMESTAMP2: 4, T.TIME2: 3}[t] + (meta + 1) // 2)
    if t == T.BIT:
        return rng.randbytes((meta & 0xFF) + 1)
    if t in (T.VARCHAR, T.STRING):
        data = _text(rng)[: 16 if t == T.STRING and col.collation == 63 else 255]
        if col.name == "ip4":
            data = data[:4]
        prefix = 1 if meta < 256 else 2
        return len(data).to_bytes(prefix, "little") + data
    if t in (T.BLOB, T.GEOMETRY):
        data = (rng.randbytes(4) if t == T.GEOMETRY else b"") + _text(rng)
        return len(data).to_bytes(meta, "little") + data
    if t in (T.ENUM, T.SET):
        return rng.randrange(6).to_bytes(meta, "little")
    raise AssertionError(t)


def _image(rng: random.Random, cols: list[ColumnSpec]) -> bytes:
    nulls = 0
    body = b""
    for i, col in enumerate(cols):
        if rng.random() < 0.2:
            nulls |= 1 << i  # a set bit on a NOT NULL column is ignored, by both decoders
            if col.nullable:
                continue
        body += _value(rng, col)
    return nulls.to_bytes((len(cols) + 7) // 8, "little") + body


@pytest.mark.parametrize("policy", [ZeroDatePolicy.NULL, ZeroDatePolicy.STRING])
@pytest.mark.parametrize("seed", range(4))
def test_compiled_rows_equal_the_generated_decoder(seed: int, policy: ZeroDatePolicy) -> None:
    rng = random.Random(seed)
    cols = _columns()
    rng.shuffle(cols)
    tm = TableMap(1, "db", "t", tuple(cols), (0,), True)
    opts = DecoderOptions(policy, (("uuid", "uuid"), ("ip4", "inet4")))
    python = compile_rows_decoder(tm, CHARSETS.__getitem__, opts)
    rows, updates = native_decoders(tm, CHARSETS.__getitem__, opts)
    prefix = rng.randbytes(7)  # the rows start inside an event body
    data = prefix + b"".join(_image(rng, cols) for _ in range(60))
    assert repr(rows(data, 7, len(data))) == repr(python.decode_rows(data, 7, len(data)))
    assert repr(updates(data, 7, len(data))) == repr(python.decode_updates(data, 7, len(data)))


def test_a_truncated_image_is_refused() -> None:
    cols = (ColumnSpec("id", T.LONG, 0, False), ColumnSpec("v", T.VARCHAR, 20, True, collation=45))
    rows, _ = native_decoders(
        TableMap(1, "db", "t", cols, (0,), True), CHARSETS.__getitem__, DecoderOptions()
    )
    whole = b"\x00" + (7).to_bytes(4, "little") + b"\x03abc"
    assert rows(whole, 0, len(whole)) == [(7, "abc")]
    with pytest.raises(ValueError, match="truncated"):
        rows(whole[:-1], 0, len(whole) - 1)
    with pytest.raises(ValueError, match="truncated"):
        rows(whole, 0, len(whole) + 1)


def test_plan_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        RowsPlan([(99, 1, 0, False, None)])
    with pytest.raises(ValueError, match="size 5"):
        RowsPlan([(0, 5, 0, False, None)])
    with pytest.raises(ValueError, match="needs a helper"):
        RowsPlan([(10, 3, 0, False, None)])
    assert RowsPlan([]).decode_rows(b"", 0, 0) == []


@pytest.mark.parametrize("key", [(), (1,), (2, 0)])
@pytest.mark.parametrize("op", [Op.CREATE, Op.DELETE])
def test_compiled_change_events_equal_the_python_ones(key: tuple[int, ...], op: Op) -> None:
    schema = TableSchema.build(
        TableRef("db", "t"),
        tuple(Column(n, "int", ArrowType(ArrowKind.INT64)) for n in ("a", "b", "c")),
        tuple(("a", "b", "c")[k] for k in key),
    )
    context = ReadContext(7, GtidState.parse("0-7-41"))
    tx_pos = Position(Gtid(0, 7, 42), "mariadb-bin.000003", 1234, 0, 2, context)
    images = [(i, f"v{i}", None) for i in range(5)]
    key_of = key_getter(key)
    made = EVENT_MAKER.changes(op, schema, key, op is Op.CREATE, images, tx_pos, 3, 99, "0-7-42")
    expected = [
        ChangeEvent(
            op,
            schema,
            key_of(image),
            None if op is Op.CREATE else image,
            image if op is Op.CREATE else None,
            tx_pos.at_row(3 + i),
            99,
            "0-7-42",
        )
        for i, image in enumerate(images)
    ]
    assert made == expected
    for ours, theirs in zip(made, expected, strict=True):
        assert type(ours) is ChangeEvent and type(ours.position) is Position
        assert ours.position._key == theirs.position._key and ours.position.context is context
        assert ours.position.to_string() == theirs.position.to_string()
        assert ours.position < tx_pos.at_row(9) and hash(ours.position) == hash(theirs.position)
    with pytest.raises(ValueError, match="row index"):
        EVENT_MAKER.changes(op, schema, key, True, images, tx_pos, 9_999_999_998, 99, "0-7-42")
