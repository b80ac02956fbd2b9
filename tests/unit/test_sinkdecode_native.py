"""The compiled envelope decoder (cdc.stream.native_columns) gives the arrays pyarrow's JSON reader
gives, or refuses the chunk: a differential over every column kind the capture maps a MariaDB type
to, with nulls, updates, deletes and table versions, then hand-written adversarial envelopes.

(test_sinkcol_columns.py compares the resulting columns with the per-change path; this file compares
the compiled decoder with the JSON reader it replaces, field by field, before the shared typing.)
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import threading
import time

import orjson
import pytest

from cdc.core.events import ChangeEvent, ColumnValue, Op
from cdc.core.positions import Gtid, Position
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from cdc.stream.arrow_changes import _json_changes, _read_schema, change_columns
from cdc.stream.envelope import EnvelopeEncoder
from cdc.stream.native_columns import RawChanges, decode_envelopes


def _col(name: str, source_type: str, kind: ArrowKind, precision: int = 0, scale: int = 0) -> Column:
    return Column(name, source_type, ArrowType(kind, precision, scale), True)


# the capture's type table (tests/integration/test_binlog_decoder_differential.py COLUMNS) as the
# MariaDB source maps it, TIME left out (no Arrow parser: those tables never take the columns)
TYPES = TableSchema.build(
    TableRef("sinkdecode", "alltypes"),
    (
        Column("id", "int", ArrowType(ArrowKind.INT32), False),
        _col("ti", "tinyint", ArrowKind.INT8),
        _col("tiu", "tinyint unsigned", ArrowKind.UINT8),
        _col("si", "smallint", ArrowKind.INT16),
        _col("siu", "smallint unsigned", ArrowKind.UINT16),
        _col("mi", "mediumint", ArrowKind.INT32),
        _col("iu", "int unsigned", ArrowKind.UINT32),
        _col("bi", "bigint", ArrowKind.INT64),
        _col("biu", "bigint unsigned", ArrowKind.UINT64),
        _col("d65", "decimal(65,30)", ArrowKind.DECIMAL, 65, 30),
        _col("d10", "decimal(10,2)", ArrowKind.DECIMAL, 10, 2),
        _col("d5", "decimal(5,0)", ArrowKind.DECIMAL, 5, 0),
        _col("f", "float", ArrowKind.FLOAT32),
        _col("db", "double", ArrowKind.FLOAT64),
        _col("flag", "tinyint(1)", ArrowKind.BOOL),
        _col("b64", "bit(64)", ArrowKind.UINT64),
        _col("y", "year", ArrowKind.UINT16),
        _col("dte", "date", ArrowKind.DATE),
        _col("dt0", "datetime", ArrowKind.TIMESTAMP),
        _col("dt3", "datetime(3)", ArrowKind.TIMESTAMP),
        _col("dt6", "datetime(6)", ArrowKind.TIMESTAMP),
        _col("ts0", "timestamp", ArrowKind.TIMESTAMP_UTC),
        _col("ts6", "timestamp(6)", ArrowKind.TIMESTAMP_UTC),
        _col("vc", "varchar(100)", ArrowKind.STRING),
        _col("txt", "text", ArrowKind.STRING),
        _col("e", "enum('small','large')", ArrowKind.STRING),
        _col("j", "json", ArrowKind.STRING),
        _col("u", "uuid", ArrowKind.STRING),
        _col("bin", "binary(6)", ArrowKind.BINARY),
        _col("blb", "blob", ArrowKind.BINARY),
    ),
    ("id",),
)
EMOJI = "héllo 😀 wörld 🎉"
ROW_MAX: tuple[ColumnValue, ...] = (
    1, 127, 255, 32767, 65535, 8388607, 4294967295, 2**63 - 1, 2**64 - 1,
    decimal.Decimal("9" * 35 + "." + "9" * 30), decimal.Decimal("12345678.99"), decimal.Decimal("99999"),
    3.4028234663852886e38, 1.7976931348623157e308, True, 2**64 - 1, 2155,
    dt.date(9999, 12, 31), dt.datetime(9999, 12, 31, 23, 59, 59),
    dt.datetime(2024, 2, 29, 12, 34, 56, 789000),
    dt.datetime(9999, 12, 31, 23, 59, 59, 999999), dt.datetime(2038, 1, 19, 3, 14, 7, tzinfo=dt.UTC),
    dt.datetime(2038, 1, 19, 3, 14, 7, 999999, tzinfo=dt.UTC),
    EMOJI, EMOJI * 20 + ' "quoted" \\ back\nslash\t\x00\x1f\x7f\u2028', "large",
    '{"k": [1, 2, "😀"]}', "123e4567-e89b-12d3-a456-426655440000",
    b"\x00\x01\x02\x00\x00\x00", b"\xab" * 7000,
)  # fmt: skip
ROW_MIN: tuple[ColumnValue, ...] = (
    2, -128, 0, -32768, 0, -8388608, 0, -(2**63), 0,
    decimal.Decimal("-" + "9" * 35 + "." + "9" * 29 + "1"), decimal.Decimal("-0.01"),
    decimal.Decimal("-99999"),
    -1.5e-10, -2.2250738585072014e-308, False, 0, 1901,
    dt.date(1000, 1, 1), dt.datetime(1000, 1, 1), dt.datetime(1000, 1, 1, 0, 0, 0, 1000),
    dt.datetime(1000, 1, 1, 0, 0, 0, 1), dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=dt.UTC),
    dt.datetime(1970, 1, 1, 0, 0, 1, 1, tzinfo=dt.UTC),
    "", "", "small", "[]", "00000000-0000-0000-0000-000000000000", b"", b"",
)  # fmt: skip
ROW_NULLS: tuple[ColumnValue, ...] = (3, *([None] * (len(TYPES.columns) - 1)))


def _pos(seq: int, row: int) -> Position:
    return Position(Gtid(0, 7901, seq), "bin.000004", 4 + 100 * seq, row)


def _event(
    op: Op,
    seq: int,
    row: int,
    after: tuple[ColumnValue, ...] | None,
    before: tuple[ColumnValue, ...] | None = None,
    schema: TableSchema = TYPES,
) -> ChangeEvent:
    image = after if after is not None else before
    assert image is not None
    pos = _pos(seq, row)
    return ChangeEvent(op, schema, (image[0],), before, after, pos, 1_700_000_000_000 + seq, str(pos.gtid))


def _values(events: list[ChangeEvent]) -> list[bytes]:
    encoder = EnvelopeEncoder("sinkdecode")
    return [encoder.encode_change(e, ts_ms=1)[1] for e in events]


def _both(values: list[bytes], schema: TableSchema = TYPES) -> tuple[RawChanges | str, RawChanges | None]:
    read_schema = _read_schema(schema)
    assert read_schema is not None
    return decode_envelopes(values, schema), _json_changes(values, schema, read_schema)


def _assert_same(native: RawChanges | str, json_read: RawChanges | None) -> None:
    assert not isinstance(native, str), native
    assert json_read is not None
    for name in ("op", "position", "source_ts_ms", "transaction_id"):
        got, want = getattr(native, name), getattr(json_read, name)
        assert got.type == want.type and got.to_pylist() == want.to_pylist(), name
    assert len(native.image) == len(json_read.image)
    for column, got, want in zip(TYPES.columns, native.image, json_read.image, strict=False):
        assert got.type == want.type, column.name
        assert got.equals(want), column.name  # values and validity


def _mixed_events() -> list[ChangeEvent]:
    rows = [ROW_MAX, ROW_MIN, ROW_NULLS]
    out = [_event(Op.READ, 1, i, (10 + i, *rows[i % 3][1:])) for i in range(9)]
    out += [_event(Op.CREATE, 2, i, rows[i]) for i in range(3)]
    # updates keep the key (a moved key goes the per-change way: below)
    out += [_event(Op.UPDATE, 3, 0, (1, *ROW_MIN[1:]), before=ROW_MAX)]
    out += [_event(Op.UPDATE, 3, 1, (2, *ROW_NULLS[1:]), before=ROW_MIN)]
    out += [_event(Op.UPDATE, 3, 2, ROW_MAX, before=None)]  # no before image: cannot move a key
    out += [_event(Op.DELETE, 4, i, None, before=rows[i]) for i in range(3)]
    return out


def test_the_compiled_decoder_reads_every_type_as_the_json_reader_does() -> None:
    values = _values(_mixed_events())
    native, json_read = _both(values)
    _assert_same(native, json_read)
    assert isinstance(native, RawChanges)
    assert native.op.to_pylist() == ["r"] * 9 + ["c"] * 3 + ["u"] * 3 + ["d"] * 3
    assert native.image[0].to_pylist()[-3:] == [1, 2, 3]  # a delete leaves its before image
    assert native.image[23].null_count == 6  # vc: the null row read 3 times, created, updated to, deleted


def test_the_columns_are_the_same_whichever_decoder_read_them(monkeypatch: pytest.MonkeyPatch) -> None:
    values = _values(_mixed_events())
    native = change_columns(values, TYPES)
    monkeypatch.setattr("cdc.stream.arrow_changes.decode_envelopes", lambda _v, _s: "off")
    json_read = change_columns(values, TYPES)
    assert native is not None and json_read is not None
    for got, want in zip(native.image, json_read.image, strict=True):
        assert got.equals(want)


def test_a_chunk_of_another_table_version_is_refused_and_its_own_version_decodes() -> None:
    wider = TableSchema.build(TYPES.ref, (*TYPES.columns, _col("extra", "int", ArrowKind.INT32)), ("id",))
    mixed = _values([_event(Op.CREATE, 5, 0, ROW_MAX), _event(Op.CREATE, 5, 1, (*ROW_MIN, 7), schema=wider)])
    assert decode_envelopes(mixed, TYPES) == "several table versions"
    assert _both(mixed)[1] is None
    later = _values([_event(Op.CREATE, 6, i, (20 + i, *ROW_MIN[1:], i), schema=wider) for i in range(3)])
    native, json_read = _both(later, wider)
    assert not isinstance(native, str) and json_read is not None
    assert native.image[-1].equals(json_read.image[-1])


@pytest.mark.parametrize(
    ("case", "events"),
    [
        ("truncate", [ChangeEvent(Op.TRUNCATE, TYPES, None, None, None, _pos(9, 0), 1, "0-7901-9")]),
        ("key moves", [_event(Op.UPDATE, 9, 0, ROW_MIN, before=ROW_MAX)]),
        ("nan", [_event(Op.CREATE, 9, 0, (*ROW_MAX[:13], float("nan"), *ROW_MAX[14:]))]),
        ("infinity", [_event(Op.CREATE, 9, 0, (*ROW_MAX[:12], float("-inf"), *ROW_MAX[13:]))]),
    ],
)
def test_what_the_json_reader_refuses_the_compiled_decoder_refuses(
    case: str, events: list[ChangeEvent]
) -> None:
    values = _values([_event(Op.CREATE, 8, 0, ROW_MAX), *events])
    native, json_read = _both(values)
    assert isinstance(native, str), case
    assert json_read is None, case
    assert change_columns(values, TYPES) is None


def test_a_keyless_tables_update_is_refused() -> None:
    keyless = TableSchema.build(TableRef("sinkdecode", "nokey"), TYPES.columns, ())
    values = _values([_event(Op.UPDATE, 9, 0, ROW_MAX, before=ROW_MAX, schema=keyless)])
    assert decode_envelopes(values, keyless) == "an update of a keyless table or one that moves its key"


# hand-written envelopes: one column of each JSON type, then the fields the columns read
SMALL = TableSchema.build(
    TableRef("sinkdecode", "small"),
    (
        Column("id", "bigint unsigned", ArrowType(ArrowKind.UINT64), False),
        _col("n", "tinyint", ArrowKind.INT8),
        _col("x", "double", ArrowKind.FLOAT64),
        _col("s", "text", ArrowKind.STRING),
        _col("b", "bool", ArrowKind.BOOL),
    ),
    ("id",),
)
SOURCE = (
    '{"version":"headwater-0.1.0","ts_ms":1700000000000,"gtid":"0-7901-1","row":0,'
    '"position":"p1","schema_version":"' + SMALL.version + '"}'
)


def _envelope(after: str, op: str = "c", source: str = SOURCE, extra: str = "") -> bytes:
    return f'{{"before":null,"after":{after},"source":{source},"op":"{op}"{extra}}}'.encode()


_GOOD = '{"id":1,"n":-5,"x":0.25,"s":"plain","b":true}'


@pytest.mark.parametrize(
    ("case", "after", "text"),
    [
        ("short escapes", r'{"id":1,"n":1,"x":1.0,"s":"\"\\\/\b\f\n\r\t","b":false}', '"\\/\b\f\n\r\t'),
        (
            "unicode escapes",
            r'{"id":1,"n":1,"x":1,"s":"caf\u00e9 \u0000 \uFFFF","b":null}',
            "café \x00 \uffff",
        ),
        ("surrogate pair", r'{"id":1,"n":1,"x":1e3,"s":"\ud83d\ude00!","b":true}', "😀!"),
        ("raw utf-8", '{"id":1,"n":1,"x":-0.0,"s":"\u00e9\U0001f389\u2028","b":true}', "é🎉\u2028"),
        ("fields reordered", '{"s":"r","b":true,"x":2.5E-3,"n":0,"id":18446744073709551615}', "r"),
        (
            "a column this version lacks",
            '{"id":1,"gone":{"a":[1,{"b":null}]},"n":1,"x":1,"s":"e","b":true}',
            "e",
        ),
        ("whitespace", '{ "id" : 1 ,\t "n":1,"x":1,"s":"w","b":true }', "w"),
        ("escaped key", r'{"\u0069d":1,"n":1,"x":1,"s":"k","b":true}', "k"),
    ],
)
def test_envelopes_the_encoder_could_write_decode_as_the_json_reader_reads_them(
    case: str, after: str, text: str
) -> None:
    values = [_envelope(_GOOD), _envelope(after, extra=',"ts_ms":1,"transaction":null')]
    read_schema = _read_schema(SMALL)
    assert read_schema is not None
    native, json_read = decode_envelopes(values, SMALL), _json_changes(values, SMALL, read_schema)
    assert not isinstance(native, str), (case, native)
    assert json_read is not None, case
    for got, want in zip(native.image, json_read.image, strict=True):
        assert got.equals(want), case
    assert native.image[3].to_pylist()[1] == text == orjson.loads(values[1])["after"]["s"]


@pytest.mark.parametrize(
    ("case", "value"),
    [
        ("lone high surrogate", _envelope(r'{"id":1,"n":1,"x":1,"s":"\ud83d!","b":true}')),
        ("lone low surrogate", _envelope(r'{"id":1,"n":1,"x":1,"s":"\ude00","b":true}')),
        ("integer over 64 bits", _envelope('{"id":18446744073709551616,"n":1,"x":1,"s":"","b":true}')),
        ("integer over its column", _envelope('{"id":1,"n":128,"x":1,"s":"","b":true}')),
        ("huge integer", _envelope('{"id":1' + "0" * 400 + ',"n":1,"x":1,"s":"","b":true}')),
        ("fraction in an integer", _envelope('{"id":1.0,"n":1,"x":1,"s":"","b":true}')),
        ("exponent in an integer", _envelope('{"id":1e2,"n":1,"x":1,"s":"","b":true}')),
        ("double overflow", _envelope('{"id":1,"n":1,"x":1e400,"s":"","b":true}')),
        ("NaN as text", _envelope('{"id":1,"n":1,"x":"NaN","s":"","b":true}')),
        ("number in a text column", _envelope('{"id":1,"n":1,"x":1,"s":5,"b":true}')),
        ("number in a bool column", _envelope('{"id":1,"n":1,"x":1,"s":"","b":1}')),
        ("missing column", _envelope('{"id":1,"n":1,"x":1,"s":""}')),
        ("column given twice", _envelope('{"id":1,"n":1,"x":1,"s":"","b":true,"b":false}')),
        ("raw control character", _envelope('{"id":1,"n":1,"x":1,"s":"a\tb","b":true}')),
        ("not utf-8", _envelope(_GOOD).replace(b"plain", b"pl\xffin")),
        ("bad escape", _envelope(r'{"id":1,"n":1,"x":1,"s":"\x41","b":true}')),
        ("leading zero", _envelope('{"id":01,"n":1,"x":1,"s":"","b":true}')),
        ("truncated", _envelope(_GOOD)[:-3]),
        ("trailing bytes", _envelope(_GOOD) + b" x"),
        ("invalid skipped field", _envelope(_GOOD, extra=',"ts_ms":[1,}')),
        ("deeply nested skipped field", _envelope(_GOOD, extra=',"t":' + "[" * 100 + "]" * 100)),
        ("no source position", _envelope(_GOOD, source=SOURCE.replace('"position":"p1",', ""))),
        ("null ts_ms", _envelope(_GOOD, source=SOURCE.replace("1700000000000", "null"))),
        ("op t", _envelope(_GOOD, op="t")),
        ("create without after", _envelope("null")),
        ("empty message", b""),
    ],
)
def test_adversarial_envelopes_are_refused_or_read_as_the_json_reader_reads_them(
    case: str, value: bytes
) -> None:
    values = [_envelope(_GOOD), value]
    read_schema = _read_schema(SMALL)
    assert read_schema is not None
    native = decode_envelopes(values, SMALL)
    json_read = _json_changes(values, SMALL, read_schema)
    if isinstance(native, str):
        return  # refused: the JSON reader (json_read) and then the per-change path decide
    # what the compiled decoder accepts, the JSON reader reads to the very same arrays
    assert json_read is not None, case
    for got, want in zip(native.image, json_read.image, strict=True):
        assert got.equals(want), case
    pytest.fail(f"{case}: accepted, expected a refusal")


def test_a_pretty_printed_envelope_decodes_to_what_orjson_reads() -> None:
    """Newlines between tokens (no writer of ours sends them, and the newline-delimited JSON reader
    cannot read them): the compiled decoder reads the values a JSON parser reads."""
    value = json.dumps(orjson.loads(_envelope(_GOOD)), indent=2).encode()
    native = decode_envelopes([value], SMALL)
    assert not isinstance(native, str)
    assert [a.to_pylist()[0] for a in native.image] == [1, -5, 0.25, "plain", True]


def test_refusals_say_why() -> None:
    lone = [_envelope(r'{"id":1,"n":1,"x":1,"s":"\ud83d!","b":true}')]
    assert decode_envelopes(lone, SMALL) == "a lone high surrogate escape"
    big = [_envelope('{"id":18446744073709551616,"n":1,"x":1,"s":"","b":true}')]
    assert decode_envelopes(big, SMALL) == "an integer out of its column's range"
    assert json.loads(_envelope(_GOOD))  # the good envelope is plain JSON


BLOB = TableSchema.build(
    TableRef("sinkdecode", "blob"),
    (Column("id", "int", ArrowType(ArrowKind.INT32), False), _col("b", "varbinary(9)", ArrowKind.BINARY)),
    ("id",),
)


def _blob(text: str) -> bytes:
    source = SOURCE.replace(SMALL.version, BLOB.version)
    return f'{{"before":null,"after":{{"id":1,"b":"{text}"}},"source":{source},"op":"c"}}'.encode()


@pytest.mark.parametrize("data", [b"", b"a", b"ab", b"abc", b"\x00\xff\xfe\x80", bytes(range(256))])
def test_binary_columns_decode_their_base64_to_the_bytes_written(data: bytes) -> None:
    values = _values([_event(Op.CREATE, 9, 0, (1, data), schema=BLOB)])
    native = decode_envelopes(values, BLOB)
    assert not isinstance(native, str)
    assert native.typed[1] is not None and native.typed[1].to_pylist() == [data]
    columns = change_columns(values, BLOB)
    assert columns is not None and columns.image[1].to_pylist() == [data]


@pytest.mark.parametrize(
    "text",
    ["QR==", "QUJ=", "Q===", "====", "QQ", "QQ=", "Q=Q=", "QUJD=A==", "QU-D", "QU_D", "QU JD"],
)
def test_base64_the_encoder_does_not_write_is_refused(text: str) -> None:
    """Set bits past the last byte, bad padding, other alphabets, blanks: binascii's lenient decode
    (the per-change path) is the JSON reader's way to reproduce, not the compiled decoder's."""
    assert decode_envelopes([_blob(text)], BLOB) == "text in a binary column that is not strict base64"


def test_another_thread_runs_while_a_chunk_is_decoded() -> None:
    """The parse releases the GIL (sinkwall's runner applies one batch while it decodes the next).
    Python ticks on this thread in the middle half of the decode's span: a call that holds the GIL
    (checked with sorted() of 2M ints, orjson.loads of a 20 MB document) lets none through there,
    because a waiting thread only gets the GIL back at the call's ends (5 ms switch interval)."""
    values = _values(_mixed_events()) * 200  # 17 MB of envelopes, ~30-90 ms
    native = decode_envelopes(values[:18], TYPES)
    assert not isinstance(native, str)

    def decode(span: list[float]) -> None:
        start = time.perf_counter()
        decode_envelopes(values, TYPES)
        span.extend((start, time.perf_counter()))

    for _attempt in range(3):  # a loaded machine may not schedule this thread in time: retry
        span: list[float] = []
        ticks = []
        thread = threading.Thread(target=decode, args=(span,))
        thread.start()
        while thread.is_alive():
            ticks.append(time.perf_counter())
        thread.join()
        start, end = span
        quarter = (end - start) / 4
        if any(start + quarter < t < end - quarter for t in ticks):
            return
    pytest.fail(f"no tick in the middle of a {1000 * (end - start):.0f} ms decode")


def test_a_chunk_the_compiled_decoder_refuses_still_gets_columns_from_the_json_reader() -> None:
    values = [_envelope(_GOOD), _envelope('{"id":2,"n":-0,"x":1,"s":"","b":true}')]  # -0: refused here
    assert decode_envelopes(values, SMALL) == "-0 in an integer field"
    columns = change_columns(values, SMALL)
    assert columns is not None  # the JSON reader's way, as before
    assert columns.image[1].to_pylist() == [-5, 0]


def test_a_table_with_a_time_column_is_left_to_the_per_change_path() -> None:
    timed = TableSchema.build(
        TableRef("sinkdecode", "timed"), (*SMALL.columns, _col("t", "time", ArrowKind.DURATION)), ("id",)
    )
    assert decode_envelopes([_envelope(_GOOD)], timed) == "a column type the columns do not decode (TIME)"
    assert change_columns([_envelope(_GOOD)], timed) is None


def _source(**changes: str) -> str:
    fields = {
        "version": '"headwater-0.1.0"',
        "ts_ms": "1700000000000",
        "gtid": '"0-7901-1"',
        "row": "0",
        "position": '"p1"',
        "schema_version": f'"{SMALL.version}"',
    }
    fields.update(changes)
    return "{" + ",".join(f'"{k}":{v}' for k, v in fields.items() if v != "-") + "}"


@pytest.mark.parametrize(
    ("case", "source", "accepted"),
    [
        ("the next row", _source(row="1", position='"p2"'), True),
        ("the same block", _source(), True),
        ("another ts_ms", _source(ts_ms="1700000000001"), True),
        ("another gtid", _source(gtid='"0-7901-2"', position='"p9"'), True),
        ("a longer position", _source(position='"p1' + "0" * 50 + '"'), True),
        ("whitespace after the shared bytes", _source(row=" 1"), True),
        ("an extra field after the shared bytes", _source(row='1,"extra":{"a":[1]}'), True),
        ("a key changed after the shared bytes", _source(position="-", row='1,"posXtion":"p2"'), False),
        ("a field twice after the shared bytes", _source(row='1,"gtid":"0-7901-1"'), False),
        ("another table version", _source(schema_version='"other"'), False),
        ("a null after the shared bytes", _source(position="null"), False),
        ("the block cut short", _source(row="1", position="-", schema_version="-"), False),
    ],
)
def test_source_blocks_that_share_their_first_bytes_with_the_previous_one_read_as_alone(
    case: str, source: str, accepted: bool
) -> None:
    """Parsing resumes after the bytes a source block shares with the previous envelope's: what it
    reads is what the JSON reader reads for the same envelopes, or a refusal."""
    values = [_envelope(_GOOD, source=_source()), _envelope(_GOOD, source=source)]
    native = decode_envelopes(values, SMALL)
    if not accepted:
        assert isinstance(native, str), case
        return
    read_schema = _read_schema(SMALL)
    assert read_schema is not None
    json_read = _json_changes(values, SMALL, read_schema)
    assert not isinstance(native, str), (case, native)
    assert json_read is not None, case
    for name in ("position", "source_ts_ms", "transaction_id"):
        assert getattr(native, name).to_pylist() == getattr(json_read, name).to_pylist(), (case, name)
