"""The writer's run of whole transactions (EnvelopeEncoder.transactions, MessageMaker.transactions)
gives, message for message and byte for byte, what the per-row path (EnvelopeEncoder.encode_change,
tombstones) gives, and stops where the capture loop must see a record itself."""

from __future__ import annotations

import random

from cdc.config.models import KafkaStreamConfig
from cdc.core.events import ChangeEvent, Op, SourceProgress, SourceRecord, TransactionEnd
from cdc.core.positions import Gtid, Position, RestartPoint, lsn_position
from cdc.stream.envelope import EnvelopeEncoder
from cdc.stream.kafka_batches import message_maker
from tests.unit.test_capwrite_batches import KEYED, KEYLESS, Message, per_row, row

_OPS = (Op.CREATE, Op.UPDATE, Op.DELETE, Op.READ)


def _change(op: Op, schema: object, n: int, position: Position, ts: int, txn: str) -> ChangeEvent:
    image = row(n)
    before = image if op in (Op.UPDATE, Op.DELETE) else None
    after = image if op in (Op.CREATE, Op.UPDATE, Op.READ) else None
    if op is Op.TRUNCATE:
        before = after = None
    key = None if op is Op.TRUNCATE or schema is KEYLESS or n % 17 == 5 else (image[0],)
    assert schema is KEYED or schema is KEYLESS
    return ChangeEvent(op, schema, key, before, after, position, ts, txn)


def transactions(seed: int, count: int) -> list[SourceRecord]:
    """Small transactions, mostly of one row, whose records differ in everything the source block
    and the template depend on: table, op, era, file, LSN positions, repair ids, timestamps."""
    rnd = random.Random(seed)
    out: list[SourceRecord] = []
    offset = 4
    for t in range(count):
        offset += rnd.randrange(1, 5000)
        kind = rnd.random()
        if kind < 0.1:
            start = lsn_position(0x16_B374D848 + offset, 0, 700 + t)
            txn = str(700 + t)
        else:
            era = 3 if kind < 0.2 else 0
            start = Position(Gtid(rnd.choice((0, 7)), 1, t + 1), f"bin.{1 + t // 40:06d}", offset, 0, era)
            txn = f"repair-{t}" if kind > 0.95 else str(start.gtid)
        ts = 1_700_000_000_000 + t
        rows = 1 if rnd.random() < 0.7 else rnd.randrange(2, 6)
        for r in range(rows):
            op = rnd.choice(_OPS) if rnd.random() < 0.97 else Op.TRUNCATE
            schema = KEYED if rnd.random() < 0.8 else KEYLESS
            out.append(_change(op, schema, t * 7 + r, start.at_row(r), ts + (r == 3), txn))
            if rnd.random() < 0.02:
                out.append(SourceProgress(RestartPoint.after(start.at_row(r)), ts))
        out.append(TransactionEnd(txn, start.at_row(rows - 1), rows, ts))
    return out


def by_transactions(
    config: KafkaStreamConfig, recs: list[SourceRecord], room: int
) -> tuple[list[Message], int, list[tuple[int, int, int, int]]]:
    """What the capture loop and KafkaStreamWriter.write_transactions do with the records (without
    Kafka): a table version's first change goes the per-row way, as does what a run stops before."""
    encoder = EnvelopeEncoder("p")
    maker = message_maker(config)
    published: set[str] = set()
    out: list[Message] = []
    taken = 0
    runs: list[tuple[int, int, int, int]] = []
    i = 0
    while i < len(recs):
        record = recs[i]
        if not isinstance(record, ChangeEvent):
            i += 1
            continue
        if record.schema.version in published:
            run = encoder.transactions(maker, recs, i, room, 123)
            if run.stop > i:
                taken += run.changes
                runs.append((i, run.stop, run.ends, run.end_rows))
                ends = [j for j in range(i, run.stop) if isinstance(recs[j], TransactionEnd)]
                assert run.ends == len(ends)
                assert run.last_end == (ends[-1] if ends else -1)
                assert run.end_rows == sum(
                    e.row_count for e in recs[i : run.stop] if isinstance(e, TransactionEnd)
                )
                out.extend((m["key"], m["value"]) for m in run.messages)
                i = run.stop
                continue
        published.add(record.schema.version)
        key, value = encoder.encode_change(record, 123)
        out.append((key, value))
        if record.op is Op.DELETE and config.tombstones_on_delete:
            out.append((key, None))
        i += 1
    return out, taken, runs


def test_runs_of_transactions_give_the_per_row_bytes() -> None:
    for seed, tombstones in ((1, True), (2, False), (3, True)):
        config = KafkaStreamConfig(bootstrap_servers="127.0.0.1:1", tombstones_on_delete=tombstones)
        recs = transactions(seed, 400)
        expected = per_row(config, recs)
        got, taken, runs = by_transactions(config, recs, 1_000_000)
        assert len(got) == len(expected)
        for n, (a, b) in enumerate(zip(got, expected, strict=True)):
            assert a == b, f"message {n}"
        assert taken > 300  # most changes went the compiled way, across transaction ends
        assert max(ends for _, _, ends, _ in runs) >= 3


def test_a_run_stops_after_the_end_that_fills_the_room() -> None:
    config = KafkaStreamConfig(bootstrap_servers="127.0.0.1:1")
    start = Position(Gtid(0, 1, 1), "bin.000001", 4)
    recs: list[SourceRecord] = []
    for t in range(10):
        first = start.in_same_file(Gtid(0, 1, t + 1), 4 + 100 * t)
        recs.append(_change(Op.CREATE, KEYED, 17 * t, first, 1, str(first.gtid)))
        recs.append(TransactionEnd(str(first.gtid), first, 2, 1))  # counts 2 rows (one skipped)
    encoder = EnvelopeEncoder("p")
    first_change = recs[0]
    assert isinstance(first_change, ChangeEvent)
    encoder.encode_change(first_change, 123)
    run = encoder.transactions(message_maker(config), recs, 2, 5, 123)
    # rows 2, 4, 6 reach 5 at the third end: the run stops after it, for the commit
    assert (run.stop, run.changes, run.ends, run.end_rows, run.last_end) == (8, 3, 3, 6, 7)
    run = encoder.transactions(message_maker(config), recs, 8, 1_000, 123)
    assert (run.stop, run.ends, run.last_end) == (20, 6, 19)
