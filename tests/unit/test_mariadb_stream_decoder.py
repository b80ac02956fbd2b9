"""Golden tests: binlog events captured from MariaDB 10.11 (binlog_row_metadata=FULL) in, records out.

Captured with a replica connection for this workload (server_id 1, binlog mysql-bin.000003):
  CREATE TABLE g.t (id INT NOT NULL PRIMARY KEY, d DECIMAL(65,30), t TIME(6), dt DATETIME(6),
    ts TIMESTAMP(3) NULL, s VARCHAR(20) utf8mb4, l CHAR(5) latin1, e ENUM('x','y'), st SET('a','b','c'),
    bu BIGINT UNSIGNED, b BIT(10), y YEAR, dz DATE, mi MEDIUMINT, ti TINYINT)
  INSERT two rows (edge values; all NULLs); UPDATE row 2; DELETE row 1; TRUNCATE; ALTER ADD z; INSERT.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from cdc.core import ChangeEvent, Op, Position, RestartPoint, SchemaChange, SchemaChangeKind, TransactionEnd
from cdc.core.errors import TerminalError, ZeroDateError
from cdc.core.events import SourceProgress
from cdc.sources.mariadb import StreamDecoder, TableFilter, ZeroDatePolicy
from cdc.sources.mariadb.row_decoder import DecoderOptions
from cdc.sources.mariadb.table_map import parse_table_map

CHARSETS = {8: "latin1", 33: "utf8mb3", 45: "utf8mb4", 46: "utf8mb4", 63: "binary", 224: "utf8mb4"}

EVENTS_HEX = [
    "0000000004010000002f00000000000000200004000000000000006d7973716c2d62696e2e303030303033",
    "bcb4076ba2010000002a00000091885c0308000ba20000000000000000000029000000000000",
    "bcb4076b020100000071010000028a5c0300001101000000000000000000260000000000010100000000000000000603737464042d002d0008000808008141aa00000000000000435245415445205441424c4520672e742028696420494e54204e4f54204e554c4c205052494d415259204b45592c206420444543494d414c2836352c3330292c20742054494d452836292c206474204441544554494d452836292c2074732054494d455354414d50283329204e554c4c2c2073205641524348415228323029204348415241435445522053455420757466386d62342c206c20434841522835292043484152414354455220534554206c6174696e312c206520454e554d282778272c277927292c20737420534554282761272c2762272c276327292c20627520424947494e5420554e5349474e45442c206220424954283130292c207920594541522c20647a20444154452c206d69204d454449554d494e542c2074692054494e59494e5429",
    "bcb4076ba2010000002a0000002c8a5c0308000ca2000000000000000000000c000000000000",
    "bcb4076b13010000008c000000418c5c03000025000000000001000167000174000f03f61312110ffefefe08100d0a09010f411e0606035000fe05f701f8010201fe7f01013003022d080426026964016401740264740274730173016c01650273740262750162017902647a026d690274690a010805070301610162016306050201780179080100",
    "bcb4076b170100000081000000c28c5c03000025000000000001000fff7f0080010000007f439eb1ca484078caf1cb3fd0f8a086f8a432eaff439eb1ca484078fc854b9104f0bdc199b2bb7efb0000017fffffff270608c3a76120f09f988003dc6eef0205ffffffffffffffff0201ff00000000008080feff02000000",
    "bcb4076b10010000001f000000e18c5c03000042aa000000000000",
    "bcb4076ba2010000002a0000000b8d5c0308000da2000000000000000000000c000000000000",
    "bcb4076b13010000008c000000d28d5c03000025000000000001000167000174000f03f61312110ffefefe08100d0a09010f411e0606035000fe05f701f8010201fe7f01013003022d080426026964016401740264740274730173016c01650273740262750162017902647a026d690274690a010805070301610162016306050201780179080100",
    "bcb4076b180100000033000000058e5c03000025000000000001000fff7fff7ffeff02000000deff0200000002c3a9",
    "bcb4076b10010000001f000000248e5c03000043aa000000000000",
    "bcb4076ba2010000002a0000004e8e5c0308000ea2000000000000000000000c000000000000",
    "bcb4076b13010000008c0000000d8f5c03000025000000000001000167000174000f03f61312110ffefefe08100d0a09010f411e0606035000fe05f701f8010201fe7f01013003022d080426026964016401740264740274730173016c01650273740262750162017902647a026d690274690a010805070301610162016306050201780179080100",
    "bcb4076b19010000007b000000888f5c03000025000000000001000fff7f0080010000007f439eb1ca484078caf1cb3fd0f8a086f8a432eaff439eb1ca484078fc854b9104f0bdc199b2bb7efb0000017fffffff270608c3a76120f09f988003dc6eef0205ffffffffffffffff0201ff00000000008080",
    "bcb4076b10010000001f000000a78f5c03000044aa000000000000",
    "bcb4076ba2010000002a000000d18f5c0308000fa20000000000000000000029000000000000",
    "bcb4076b02010000005400000025905c03000011010000000000000000001d0000000000010100000000000000000603737464042d002d000800080800005452554e43415445205441424c4520672e74",
    "bcb4076ba2010000002a0000004f905c03080010a20000000000000000000029000000000000",
    "bcb4076b02010000006b000000ba905c0300001101000000000000000000260000000000010100000000000000000603737464042d002d0008000808008146aa00000000000000414c544552205441424c4520672e742041444420434f4c554d4e207a20494e54",
    "bcb4076ba2010000002a000000e4905c03080011a2000000000000000000000c000000000000",
    "bcb4076b13010000008f000000af915c03000028000000000001000167000174001003f61312110ffefefe08100d0a0901030f411e0606035000fe05f701f8010201feff01013003022d080428026964016401740264740274730173016c01650273740262750162017902647a026d69027469017a0a010805070301610162016306050201780179080100",
    "bcb4076b17010000002c000000db915c030000280000000000010010fffffe7f0700000007000000",
    "bcb4076b10010000001f000000fa915c03000047aa000000000000",
]
EVENTS = [bytes.fromhex(h) for h in EVENTS_HEX]


def decode(**kwargs: object) -> list[object]:
    return list(StreamDecoder(CHARSETS.__getitem__, **kwargs).records(EVENTS))  # type: ignore[arg-type]


def test_record_sequence() -> None:
    kinds = [r.op.value if isinstance(r, ChangeEvent) else type(r).__name__ for r in decode()]
    assert kinds == [
        "SchemaChange",
        "TransactionEnd",  # CREATE
        "c",
        "c",
        "TransactionEnd",  # multi-row INSERT
        "u",
        "TransactionEnd",
        "d",
        "TransactionEnd",
        "t",
        "TransactionEnd",  # TRUNCATE
        "SchemaChange",
        "TransactionEnd",  # ALTER
        "c",
        "TransactionEnd",
    ]


def test_edge_values() -> None:
    first = next(r for r in decode() if isinstance(r, ChangeEvent))
    names = first.schema.column_names
    row = dict(zip(names, first.after or (), strict=True))
    assert row["d"] == Decimal("-12345678901234567890123456789012345.123456789012345678901234567890")
    assert row["t"] == -dt.timedelta(hours=838, minutes=59, seconds=59, microseconds=999999)
    assert row["dt"] == dt.datetime(2024, 2, 29, 23, 59, 59, 1)
    assert row["ts"] == dt.datetime(2038, 1, 19, 3, 14, 7, 999000, tzinfo=dt.UTC)
    assert row["s"] == "ça 😀" and row["l"] == "Ünï"
    assert row["e"] == "y" and row["st"] == "a,c"
    assert row["bu"] == 2**64 - 1 and row["b"] == 0b1000000001 and row["y"] == 2155
    assert row["dz"] is None  # zero date, default policy NULL
    assert row["mi"] == -8388608 and row["ti"] == -128
    assert first.key == (1,)
    assert [str(c.arrow_type) for c in first.schema.columns][:5] == [
        "int32",
        "decimal256(65, 30)",
        "duration[us]",
        "timestamp[us]",
        "timestamp[us, tz=UTC]",
    ]


def test_positions_are_ordered_unique_and_per_row() -> None:
    records = decode()
    positions = [r.position for r in records if isinstance(r, ChangeEvent | SchemaChange)]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    inserts = [r for r in records if isinstance(r, ChangeEvent) and r.op is Op.CREATE][:2]
    assert [p.position.row for p in inserts] == [0, 1]
    assert inserts[0].position.offset == inserts[1].position.offset
    assert all(p.file == "mysql-bin.000003" for p in positions)
    assert Position.parse(positions[3].to_string()) == positions[3]


def test_update_images_and_truncate() -> None:
    records = decode()
    update = next(r for r in records if isinstance(r, ChangeEvent) and r.op is Op.UPDATE)
    names = update.schema.column_names
    assert dict(zip(names, update.before or (), strict=True))["s"] is None
    assert dict(zip(names, update.after or (), strict=True))["s"] == "é"
    truncate = next(r for r in records if isinstance(r, ChangeEvent) and r.op is Op.TRUNCATE)
    assert truncate.key is None and truncate.before is None and truncate.after is None
    assert str(truncate.table) == "g.t"


def test_ddl_gives_schema_change_and_a_new_version() -> None:
    records = decode()
    changes = [r for r in records if isinstance(r, SchemaChange)]
    assert [c.kind for c in changes] == [SchemaChangeKind.CREATE, SchemaChangeKind.ALTER]
    assert changes[1].previous_version is not None
    rows = [r for r in records if isinstance(r, ChangeEvent) and r.op is not Op.TRUNCATE]
    assert rows[-1].schema_version != rows[0].schema_version
    assert rows[-1].schema.column_names[-1] == "z"
    assert changes[1].previous_version == rows[0].schema_version


def test_transaction_end_and_restart_skips_handled_rows() -> None:
    records = decode()
    insert_end = next(r for r in records if isinstance(r, TransactionEnd) and r.row_count == 2)
    # resume inside the multi-row insert, after its first row
    first_row = next(r for r in records if isinstance(r, ChangeEvent) and r.op is Op.CREATE)
    resumed_events = EVENTS[:1] + EVENTS[3:]  # the server starts at the transaction's GTID
    decoder = StreamDecoder(CHARSETS.__getitem__, resume=RestartPoint.after(first_row.position))
    resumed = list(decoder.records(resumed_events))
    assert isinstance(resumed[0], ChangeEvent) and resumed[0].position == first_row.position.at_row(1)
    assert resumed[1] == insert_end
    with pytest.raises(TerminalError):
        list(StreamDecoder(CHARSETS.__getitem__, resume=insert_end.restart).records(EVENTS[:1] + EVENTS[7:]))
    # a boundary (nothing to skip) accepts whatever transaction comes next
    boundary = RestartPoint(insert_end.last_position.at_row(0), 0)
    decoder = StreamDecoder(CHARSETS.__getitem__, resume=boundary)
    after_boundary = list(decoder.records(EVENTS[:1] + EVENTS[7:]))
    assert isinstance(after_boundary[0], ChangeEvent) and after_boundary[0].op is Op.UPDATE


def test_filters_and_zero_date_policies() -> None:
    excluded = decode(table_filter=TableFilter(("g.*",), ("g.t",)))
    assert not [r for r in excluded if not isinstance(r, TransactionEnd | SourceProgress)]
    assert len(decode(table_filter=TableFilter(("*.t",)))) == 15
    strings = decode(options=DecoderOptions(ZeroDatePolicy.STRING))
    first = next(r for r in strings if isinstance(r, ChangeEvent))
    assert first.after is not None and first.after[12] == "0000-00-00"
    with pytest.raises(ZeroDateError, match=r"g\.t\.dz"):
        decode(options=DecoderOptions(ZeroDatePolicy.ERROR))


def test_table_map_full_metadata() -> None:
    table_map_event = next(e for e in EVENTS if e[4] == 19)
    tm = parse_table_map(table_map_event[19:])
    assert (tm.db, tm.table, tm.has_names) == ("g", "t", True)
    assert [c.name for c in tm.columns][:4] == ["id", "d", "t", "dt"]
    assert tm.primary_key == (0,)
    by_name = {c.name: c for c in tm.columns}
    assert by_name["bu"].unsigned and not by_name["mi"].unsigned
    assert by_name["e"].values == ("x", "y") and by_name["st"].values == ("a", "b", "c")
    assert not by_name["id"].nullable and by_name["d"].nullable
    assert by_name["d"].meta == (65 << 8 | 30)


def test_each_table_map_is_compiled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import cdc.sources.mariadb.table_registry as module  # where TABLE_MAPs are compiled

    calls = []
    real = module.compile_rows_decoder

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(args[0])
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(module, "compile_rows_decoder", counting)
    decoder = StreamDecoder(CHARSETS.__getitem__)
    list(decoder.records(EVENTS))
    list(decoder.records(EVENTS))  # a second pass (e.g. after a reconnect) reuses the cache
    assert len(calls) == 2  # the table before and after ALTER TABLE
    assert "def decode_rows" in real(calls[0], CHARSETS.__getitem__).source
