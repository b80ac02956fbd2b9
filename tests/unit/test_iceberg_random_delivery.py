"""Random streams re-delivered with overlaps and crashes, against a model: exact history, state as of."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pytest

from cdc.core.events import ChangeEvent, Op
from cdc.core.positions import Position
from cdc.core.schemas import TableRef
from sinks.contract import AppliedState, SinkBatch
from sinks.iceberg import read_history, state_as_of
from sinks.iceberg.table_writer import TableWriter
from tests.unit.test_iceberg_sink import T0_MS, config, opened, pos, schema, settle

TABLES = (schema("shop", "a"), schema("shop", "b"))


def stream(rnd: random.Random, transactions: int) -> list[list[ChangeEvent]]:
    """Transactions of 1-4 row changes over two tables, with key moves and the odd truncate."""
    live: dict[TableRef, dict[int, str]] = {s.ref: {} for s in TABLES}
    out: list[list[ChangeEvent]] = []
    for seq in range(1, transactions + 1):
        events: list[ChangeEvent] = []
        for row in range(rnd.randint(1, 4)):
            s = rnd.choice(TABLES)
            rows = live[s.ref]
            p, ts, txn = pos(seq, row), T0_MS + seq * 1000, f"0-1-{seq}"
            r = rnd.random()
            if r < 0.02:
                events.append(ChangeEvent(Op.TRUNCATE, s, None, None, None, p, ts, txn))
                rows.clear()
            elif r < 0.5 or not rows:
                key = rnd.randint(1, 40)
                image = (key, f"v{seq}.{row}")
                op = Op.UPDATE if key in rows else Op.CREATE
                before = (key, rows[key]) if key in rows else None
                events.append(ChangeEvent(op, s, (key,), before, image, p, ts, txn))
                rows[key] = image[1]
            elif r < 0.8:
                key = rnd.choice(sorted(rows))
                new_key = key if rnd.random() < 0.8 else rnd.randint(41, 80)
                if new_key != key and new_key in rows:
                    new_key = key
                before, after = (key, rows[key]), (new_key, f"v{seq}.{row}")
                events.append(ChangeEvent(Op.UPDATE, s, (new_key,), before, after, p, ts, txn))
                del rows[key]
                rows[new_key] = after[1]
            else:
                key = rnd.choice(sorted(rows))
                events.append(ChangeEvent(Op.DELETE, s, (key,), (key, rows.pop(key)), None, p, ts, txn))
        out.append(events)
    return out


def model_state(
    transactions: list[list[ChangeEvent]], ref: TableRef, at: Position
) -> list[tuple[object, ...]]:
    rows: dict[object, object] = {}
    for event in (e for t in transactions for e in t):
        if event.position > at or event.table != ref:
            continue
        if event.op is Op.TRUNCATE:
            rows.clear()
        elif event.op is Op.DELETE:
            assert event.before is not None
            rows.pop(event.before[0], None)
        else:
            assert event.after is not None
            if event.before is not None:
                rows.pop(event.before[0], None)
            rows[event.after[0]] = event.after[1]
    return sorted(rows.items())


class Killed(BaseException):
    """The process dies inside a commit (between two tables' commits, or before the progress one)."""


@pytest.mark.parametrize("kafka", [False, True], ids=["embedded", "kafka"])
@pytest.mark.parametrize("seed", range(4))
def test_random_redelivery_and_crashes_keep_history_exact(
    tmp_path: Path, seed: int, kafka: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    rnd = random.Random(seed)
    transactions = stream(rnd, 60)
    cfg = config(tmp_path, commit_rows=rnd.randint(2, 12))
    original_commit = TableWriter.commit

    def sometimes_killed(
        self: TableWriter, chunks: list[pa.Table], properties: dict[str, str], exclusive: bool
    ) -> int:
        if rnd.random() < 0.1:
            raise Killed
        return original_commit(self, chunks, properties, exclusive)

    monkeypatch.setattr(TableWriter, "commit", sometimes_killed)
    sink = opened(cfg)
    start = 0  # the caller's resume point: a transaction index
    flushed = False
    while not flushed:
        crashed = False
        try:
            if start < len(transactions):
                end = min(len(transactions), start + rnd.randint(1, 5))
                # embedded mode resumes from the lowest sink, so batches overlap what is held; a
                # Kafka consumer delivers from the stored offset (one partition: offset = index)
                first = start if kafka else max(0, start - rnd.randint(0, 2))
                records = [e for t in transactions[first:end] for e in t]
                state = AppliedState(records[-1].position, {"t:0": end} if kafka else {})
                start = end
                sink.apply(SinkBatch(records, state))
                if rnd.random() < 0.15:
                    settle(sink)  # the commit lands or dies before the "crash" below
                    crashed = True
            else:
                sink.flush()
                flushed = True
        except Killed:
            crashed = True
        if crashed:  # unflushed work is lost; a new process resumes from applied()
            sink = opened(cfg)
            applied = sink.applied()
            if applied is None:
                start = 0
            elif kafka:
                start = applied.offsets["t:0"]
            else:
                done = sum(1 for t in transactions if t[-1].position <= applied.position)
                start = max(0, done - rnd.randint(0, 3))  # and sometimes from further back
    monkeypatch.setattr(TableWriter, "commit", original_commit)
    sink.close()

    all_events = [e for t in transactions for e in t]
    for s in TABLES:
        history = read_history(cfg.catalog, cfg.namespace, s.ref).rows
        expected = []
        for e in all_events:
            if e.table != s.ref:
                continue
            moved = (
                e.op is Op.UPDATE
                and e.before is not None
                and e.after is not None
                and e.before[0] != e.after[0]
            )
            expected += [("d", e.position.to_string())] if moved else []
            expected.append((e.op.value, e.position.to_string()))
        assert (
            list(zip(history.column("_op").to_pylist(), history.column("_position").to_pylist(), strict=True))
            == expected
        )
        for seq in rnd.sample(range(1, len(transactions) + 1), 8):
            at = pos(seq, 9)
            got = state_as_of(cfg.catalog, cfg.namespace, s.ref, at)
            assert sorted(
                zip(got.column("id").to_pylist(), got.column("name").to_pylist(), strict=True)
            ) == model_state(transactions, s.ref, at), (s.ref, seq)
