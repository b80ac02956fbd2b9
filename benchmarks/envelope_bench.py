"""Envelope serialization speed: ChangeEvents of a typical 8-column row -> key and value bytes.

Run: ``.venv/bin/python benchmarks/envelope_bench.py [N]``. Prints events/s for the encoder the
stream uses (rows written by the compiled ``headwater_native.RowPlan``), and in the same run the
pure-Python path it replaced (row dicts serialized by orjson, what ``EnvelopeEncoder.value`` builds)
and the stdlib json on the same dicts. Never asserted in tests.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import sys
import time

from cdc.core.events import ChangeEvent, Op
from cdc.core.positions import Gtid, Position
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from cdc.stream.envelope import EnvelopeEncoder, dumps


def _schema() -> TableSchema:
    cols = (
        Column("id", "bigint unsigned", ArrowType(ArrowKind.UINT64), False),
        Column("account_id", "int", ArrowType(ArrowKind.INT32)),
        Column("title", "varchar", ArrowType(ArrowKind.STRING)),
        Column("amount", "decimal(12,2)", ArrowType(ArrowKind.DECIMAL, 12, 2)),
        Column("score", "double", ArrowType(ArrowKind.FLOAT64)),
        Column("active", "tinyint", ArrowType(ArrowKind.INT8)),
        Column("created_at", "datetime(6)", ArrowType(ArrowKind.TIMESTAMP)),
        Column("updated_at", "timestamp", ArrowType(ArrowKind.TIMESTAMP_UTC)),
    )
    return TableSchema.build(TableRef("shop", "orders"), cols, ("id",))


def _events(n: int) -> list[ChangeEvent]:
    schema = _schema()
    base = Position(Gtid(0, 1, 1000), "mysql-bin.000003", 4567)
    created = dt.datetime(2024, 5, 1, 12, 30, 15, 123456)
    updated = dt.datetime(2024, 5, 2, 8, 0, 0, tzinfo=dt.UTC)
    out = []
    for i in range(n):
        row = (i, 42, f"order number {i}", decimal.Decimal("1234.50"), 0.75, 1, created, updated)
        out.append(ChangeEvent(Op.CREATE, schema, (i,), None, row, base.at_row(i), 1714560000000, "0-1-1000"))
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    events = _events(n)
    enc = EnvelopeEncoder("bench")
    enc.encode(events[0])
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        for e in events:
            enc.encode(e)
        best = max(best, n / (time.perf_counter() - t0))
    size = len(enc.encode(events[1])[1])
    print(f"compiled row encoder envelope: {best:,.0f} events/s ({size} bytes/value)")

    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        for e in events:
            codec = enc.codec(e.schema)
            dumps(codec.key(e))
            dumps(enc.value(e))
        best = max(best, n / (time.perf_counter() - t0))
    print(f"pure-Python envelope (row dicts + orjson): {best:,.0f} events/s")

    t0 = time.perf_counter()
    for e in events:
        codec = enc.codec(e.schema)
        json.dumps(codec.key(e)).encode()
        json.dumps(enc.value(e), ensure_ascii=False, separators=(",", ":")).encode()
    print(f"stdlib json envelope: {n / (time.perf_counter() - t0):,.0f} events/s")

    values = [enc.value(e) for e in events[:50_000]]
    t0 = time.perf_counter()
    for v in values:
        dumps(v)
    print(f"orjson dumps only: {len(values) / (time.perf_counter() - t0):,.0f} values/s")


if __name__ == "__main__":
    main()
