"""The metrics' row counts by table and op: the whole-chunk fast path agrees with a row-by-row count."""

from __future__ import annotations

import random
from collections import Counter

from cdc.core.events import ChangeEvent, Op, SchemaChange, SchemaChangeKind, SourceRecord, TransactionEnd
from cdc.core.positions import Gtid, Position
from cdc.core.schemas import TableRef, TableSchema
from cdc.daemon.metrics import tally_chunk

POS = Position(Gtid(0, 1, 1), "b.000001", 4)
SCHEMAS = [TableSchema(TableRef("db", name), (), (), f"v-{name}") for name in ("a", "b")]


def _event(schema: TableSchema, op: Op) -> ChangeEvent:
    return ChangeEvent(op, schema, (1,), None, (1,), POS, 0, "0-1-1")


def _expected(chunk: list[SourceRecord]) -> Counter[tuple[str, str, str]]:
    return Counter(
        (r.schema.ref.db, r.schema.ref.table, r.op.value) for r in chunk if isinstance(r, ChangeEvent)
    )


def test_tally_chunk_matches_a_row_by_row_count() -> None:
    rng = random.Random(7)
    end = TransactionEnd("0-1-1", POS, 1, 0)
    ddl = SchemaChange(SchemaChangeKind.ALTER, SCHEMAS[0].ref, "ALTER TABLE a ADD c INT", POS, 0, "0-1-1")
    chunks: list[list[SourceRecord]] = [
        [],
        [end],
        [_event(SCHEMAS[0], Op.CREATE), end],  # a single-row transaction
        [_event(SCHEMAS[1], Op.DELETE)] * 300,  # one statement's rows, cut before its end
        [*([_event(SCHEMAS[1], Op.DELETE)] * 5), end],
        [ddl, end],
    ]
    for _ in range(200):  # mixed tables and ops, sometimes a schema change among them
        body: list[SourceRecord] = [
            _event(rng.choice(SCHEMAS), rng.choice([Op.CREATE, Op.UPDATE, Op.DELETE]))
            for _ in range(rng.randint(1, 20))
        ]
        if rng.random() < 0.2:
            body.insert(rng.randrange(len(body)), ddl)
        chunks.append(body + ([end] if rng.random() < 0.5 else []))
    for chunk in chunks:
        counted: Counter[tuple[str, str, str]] = Counter()
        tally_chunk(chunk, counted)
        assert counted == _expected(chunk), chunk
