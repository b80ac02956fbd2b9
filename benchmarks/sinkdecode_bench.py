"""`cdc sink` decode alone: a chunk's envelopes to Arrow columns, compiled against pyarrow.json.

    .venv/bin/python -m benchmarks.sinkdecode_bench [--chunk 2000] [--rounds 7]

Envelopes of the benchmark workload's four tables (benchmarks/workload.py: revision, text, page,
actor; rows as its SELECTs make them) are written by the capture's own encoder, then decoded a
chunk at a time, on one thread, no services needed. For each table, CPU microseconds per envelope
(best of ``--rounds``):
  json read        pyarrow's JSON reader and the checks after it (arrow_changes._json_changes)
  compiled read    headwater_native.EnvelopePlan (native_columns.decode_envelopes)
  columns (json)   arrow_changes.change_columns as before: the JSON reader, then the Arrow typing
  columns          arrow_changes.change_columns now: the compiled read, then the same typing
Prints one JSON document (and a table on stderr).
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any
from unittest import mock

import orjson

import cdc.stream.arrow_changes as arrow_changes
from cdc.core.events import ChangeEvent, ColumnValue, Op
from cdc.core.positions import Gtid, Position
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from cdc.stream.envelope import EnvelopeEncoder
from cdc.stream.native_columns import decode_envelopes


def _c(name: str, source_type: str, kind: ArrowKind, nullable: bool = True, p: int = 0, s: int = 0) -> Column:
    return Column(name, source_type, ArrowType(kind, p, s), nullable)


K = ArrowKind
# benchmarks/workload.py's tables as the capture maps them
TABLES = {
    "revision": TableSchema.build(
        TableRef("hw_bench", "revision"),
        (
            _c("rev_id", "bigint unsigned", K.UINT64, False),
            _c("rev_page", "int unsigned", K.UINT32, False),
            _c("rev_actor", "bigint unsigned", K.UINT64, False),
            _c("rev_timestamp", "datetime(6)", K.TIMESTAMP, False),
            _c("rev_minor_edit", "tinyint unsigned", K.UINT8, False),
            _c("rev_len", "int unsigned", K.UINT32),
            _c("rev_sha1", "varbinary(32)", K.BINARY, False),
            _c("rev_score", "decimal(10,4)", K.DECIMAL, True, 10, 4),
            _c("rev_comment", "text", K.STRING),
            _c("rev_meta", "json", K.STRING),
        ),
        ("rev_id",),
    ),
    "text": TableSchema.build(
        TableRef("hw_bench", "text"),
        (
            _c("old_id", "bigint unsigned", K.UINT64, False),
            _c("old_text", "mediumtext", K.STRING),
            _c("old_flags", "varbinary(255)", K.BINARY),
        ),
        ("old_id",),
    ),
    "page": TableSchema.build(
        TableRef("hw_bench", "page"),
        (
            _c("page_id", "int unsigned", K.UINT32, False),
            _c("page_namespace", "int", K.INT32, False),
            _c("page_title", "varbinary(255)", K.BINARY, False),
            _c("page_is_redirect", "tinyint unsigned", K.UINT8, False),
            _c("page_touched", "datetime(6)", K.TIMESTAMP, False),
            _c("page_latest", "bigint unsigned", K.UINT64, False),
            _c("page_len", "int unsigned", K.UINT32, False),
            _c("page_content_model", "varbinary(32)", K.BINARY),
        ),
        ("page_id",),
    ),
    "actor": TableSchema.build(
        TableRef("hw_bench", "actor"),
        (
            _c("actor_id", "bigint unsigned", K.UINT64, False),
            _c("actor_user", "int unsigned", K.UINT32),
            _c("actor_name", "varbinary(255)", K.BINARY, False),
            _c("actor_registered", "datetime(6)", K.TIMESTAMP),
        ),
        ("actor_id",),
    ),
}
_EPOCH = dt.datetime(2024, 1, 1)


def _row(table: str, i: int) -> tuple[ColumnValue, ...]:
    """Row ``i`` as benchmarks/workload.py's SELECT writes it."""
    at = _EPOCH + dt.timedelta(microseconds=i * 1009)
    if table == "revision":
        meta = json.dumps({"tags": ["mobile edit", "visualeditor"], "bot": i % 7 == 0, "size": i})
        score = (decimal.Decimal(i % 1_000_000) / 10_000).quantize(decimal.Decimal("0.0001"))
        comment = f"/* section {i % 40} */ copyedit, fixed typos and links"
        sha1 = hashlib.sha1(str(i).encode()).digest()
        return (i, 1 + i % 50_000, 1 + i % 5000, at, i % 2, 100 + i % 5000, sha1, score, comment, meta)
    if table == "text":
        return (i, f"{{{{Infobox|name={i}}}}} " + "Lorem ipsum dolor sit amet. " * 6, b"utf-8,gzip")
    if table == "page":
        return (
            i,
            i % 16,
            f"Page_title_number_{i}".encode(),
            int(i % 9 == 0),
            at,
            i * 3,
            500 + i % 20_000,
            b"wikitext",
        )
    return (i, i % 100_000, f"User {i}".encode(), at)


def envelopes(table: str, n: int) -> list[bytes]:
    """``n`` insert envelopes of ``table`` in 1000-row transactions, as the capture writes them."""
    schema = TABLES[table]
    encoder = EnvelopeEncoder("bench")
    out = []
    for i in range(n):
        seq, row = divmod(i, 1000)
        pos = Position(Gtid(0, 1, 1 + seq), "mariadb-bin.000001", 4 + seq, row)
        event = ChangeEvent(
            Op.CREATE, schema, (i,), None, _row(table, i), pos, 1_700_000_000_000, str(pos.gtid)
        )
        out.append(encoder.encode_change(event, ts_ms=1_700_000_000_500)[1])
    return out


def _cpu_us(fn: Callable[[], object], n: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return 1e6 * best / n


def _columns_by_json(values: list[bytes], schema: TableSchema) -> object:
    # the compiled decoder refusing every chunk: change_columns as it was before it
    with mock.patch.object(arrow_changes, "decode_envelopes", lambda _v, _s: "benchmark: JSON reader"):
        return arrow_changes.change_columns(values, schema)


def measure(table: str, chunk: int, rounds: int) -> dict[str, Any]:
    schema = TABLES[table]
    values = envelopes(table, chunk)
    read_schema = arrow_changes._read_schema(schema)
    assert read_schema is not None
    assert not isinstance(decode_envelopes(values, schema), str), "the compiled decoder refused"
    assert arrow_changes._json_changes(values, schema, read_schema) is not None

    def per_change() -> None:
        for value in values:
            orjson.loads(value)

    return {
        "envelope_bytes": sum(map(len, values)) / len(values),
        "json_read_us": _cpu_us(
            lambda: arrow_changes._json_changes(values, schema, read_schema), chunk, rounds
        ),
        "compiled_read_us": _cpu_us(lambda: decode_envelopes(values, schema), chunk, rounds),
        "columns_json_us": _cpu_us(lambda: _columns_by_json(values, schema), chunk, rounds),
        "columns_us": _cpu_us(lambda: arrow_changes.change_columns(values, schema), chunk, rounds),
        "orjson_loads_us": _cpu_us(per_change, chunk, rounds),  # a yardstick: one parse to dicts
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--chunk", type=int, default=2000, help="envelopes per chunk")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tables", default=",".join(TABLES))
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    results = {t: measure(t, args.chunk, args.rounds) for t in args.tables.split(",")}
    print(
        f"{'table':10} {'bytes':>6} {'json read':>10} {'compiled':>9} {'columns(json)':>14} {'columns':>8}",
        file=sys.stderr,
    )
    for table, r in results.items():
        print(
            f"{table:10} {r['envelope_bytes']:6.0f} {r['json_read_us']:10.2f} {r['compiled_read_us']:9.2f}"
            f" {r['columns_json_us']:14.2f} {r['columns_us']:8.2f}  us/envelope",
            file=sys.stderr,
        )
    print(json.dumps({"chunk": args.chunk, "rounds": args.rounds, "load_1m": load, "tables": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
