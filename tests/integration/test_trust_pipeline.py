"""The trust fault test: the whole Kafka pipeline under SIGKILL, with every change shape that once broke.

`cdc run` captures to Kafka with `partitions: 3`; three `cdc sink` processes (their own consumer
groups) apply it to PostgreSQL, SQLite and Iceberg. A workload (tests/support/trust_workload.py) writes
primary-key changes, ADD / RENAME / DROP COLUMN, TRUNCATE, a keyless table with identical rows, a 5 MB
row, a savepoint rollback next to a MyISAM write, reserved-word names and writes to a database that is
not captured, while the four processes are killed with SIGKILL at random, at least ten times in all,
and restarted. Afterwards:
- every serving table equals the source, row by row;
- the Iceberg history holds each change exactly once: its positions are exactly those the binlog
  holds for the captured tables (read again independently with the binlog reader), no more, no fewer;
- replaying the topics gives the source's rows.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pymysql
import pytest

from cdc.config import load_config
from cdc.config.models import SqlSinkConfig
from cdc.core.events import ChangeEvent, Op
from cdc.core.positions import RestartPoint
from cdc.core.schemas import TableRef
from cdc.daemon.mariadb_source import connection_settings
from cdc.devstack.connections import StackConnections
from cdc.sources.mariadb import MariaDbBinlogReader, ReaderConfig, StartAt
from cdc.sources.mariadb.server_position import current_restart_point
from sinks.iceberg import read_history
from sinks.sql import create_sql_sink
from tests.support.kafka_replay import consume_all, pipeline_topics, replay
from tests.support.trust_workload import TrustWorkload
from tests.support.workload import Daemon

pytestmark = pytest.mark.slow

KEYED = ("accounts", "order", "evolving", "blobs", "truncme", "side")
CAPTURED = (*KEYED, "keyless")
KILLS = 12
WORKLOAD_SECONDS = 45


def _config(tmp: Path, stack: StackConnections, name: str, db: str, sink: str, server_id: int) -> Path:
    m = stack.mariadb
    folder = tmp / sink
    folder.mkdir()
    sinks = {
        "pg": f"{{type: sql, name: pg, url: '{stack.postgres.sqlalchemy_url()}', schema: {db},"
        f" exclude_tables: ['{db}.keyless']}}",
        "sqlite": f"{{type: sql, name: lite, url: 'sqlite:///{folder / 'serving.db'}',"
        f" exclude_tables: ['{db}.keyless']}}",
        "iceberg": f"{{type: iceberg, name: history, namespace: {db}, commit_rows: 5000, commit_seconds: 2,"
        f" catalog: {{type: sql, uri: 'sqlite:///{folder / 'catalog.db'}',"
        f" warehouse: '{(folder / 'wh').as_uri()}'}}}}",
        "capture": "",
    }
    path = folder / "cdc.yaml"
    path.write_text(
        f"name: {name}\n"
        f"source: {{type: mariadb, host: {m.host}, port: {m.port}, user: {m.user},"
        f" password: '${{CDC_SOURCE_PASSWORD}}', server_id: {server_id},"
        f" tables: ['{db}.*'], heartbeat_seconds: 1}}\n"
        f"stream: {{type: kafka, bootstrap_servers: '{stack.kafka.bootstrap_servers}', partitions: 3,"
        f" flush_max_events: 2000, flush_max_ms: 100, consumer_group: 'trust-{name}-{sink}'}}\n"
        + (f"sinks:\n  - {sinks[sink]}\n" if sinks[sink] else "")
        + "batch: {max_events: 2000, max_ms: 200, idle_flush_seconds: 2}\n"
        f"state_dir: {folder / 'state'}\n"
    )
    return path


def _source_rows(workload: TrustWorkload, table: str) -> dict[str, dict[str, Any]]:
    with workload.connect() as conn, conn.cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute(f"SELECT * FROM `{table}`")
        return {str(row["id"]): dict(row) for row in cur.fetchall()}


def _reference_positions(
    stack: StackConnections, config: Path, start: RestartPoint
) -> dict[str, Counter[str]]:
    """Each captured table's change positions as the binlog holds them, read again from the start."""
    cfg = load_config(config, {"CDC_SOURCE_PASSWORD": stack.mariadb.password})
    reader = MariaDbBinlogReader(
        ReaderConfig(
            connection_settings(cfg.source),
            server_id=random.randint(67_000, 67_999),
            tables=tuple(cfg.source.tables),
            blocking=False,
        )
    )
    out: dict[str, Counter[str]] = {}
    try:
        for record in reader.records(StartAt.at(start)):
            if isinstance(record, ChangeEvent):
                # the history keeps an update of a keyless table as its two images, at one position
                rows = 2 if record.op is Op.UPDATE and not record.schema.primary_key else 1
                out.setdefault(record.table.table, Counter())[record.position.to_string()] += rows
    finally:
        reader.close()
    return out


def _normalize(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in row.items()}


def test_kafka_pipeline_under_sigkill_with_every_change_shape(
    stack: StackConnections, tmp_path: Path
) -> None:
    name = f"trust-{uuid.uuid4().hex[:8]}"
    db = f"trust_{uuid.uuid4().hex[:8]}"
    seed = random.randrange(1 << 30)
    print(f"trust pipeline test seed {seed}")
    rng = random.Random(seed)
    workload = TrustWorkload(stack, db, f"{db}_noise", seed)
    workload.create()
    server_id = rng.randint(68_000, 68_999)
    configs = {
        s: _config(tmp_path, stack, name, db, s, server_id) for s in ("capture", "pg", "sqlite", "iceberg")
    }
    password = stack.mariadb.password
    daemons = {
        "capture": Daemon(configs["capture"], tmp_path / "run.log", "run", password),
        **{
            s: Daemon(configs[s], tmp_path / f"sink-{s}.log", "sink", password)
            for s in ("pg", "sqlite", "iceberg")
        },
    }
    cfg = load_config(configs["capture"], {"CDC_SOURCE_PASSWORD": password})
    start = current_restart_point(connection_settings(cfg.source))
    daemons["capture"].catch_up()  # the pipeline begins here
    for daemon in daemons.values():
        daemon.start()

    writer = threading.Thread(target=workload.run, args=(WORKLOAD_SECONDS,))
    writer.start()
    kills: Counter[str] = Counter()
    try:
        deadline = time.monotonic() + WORKLOAD_SECONDS
        while sum(kills.values()) < KILLS or time.monotonic() < deadline:
            time.sleep(rng.uniform(0.5, 4.0))
            victim = rng.choice(sorted(daemons))
            daemon = daemons[victim]
            assert daemon.proc is not None
            code = daemon.proc.poll()
            assert code is None, f"{victim} exited {code} on its own:\n{daemon.log.read_text()[-4000:]}"
            daemon.kill()
            kills[victim] += 1
            daemon.start()
    finally:
        workload.stop.set()
        writer.join()
    assert workload.error is None, workload.error
    print(f"kills: {dict(kills)}; transactions: {workload.transactions}")

    for victim, daemon in daemons.items():
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGTERM)
        # -SIGTERM: the signal came before a just-restarted process had installed its handler,
        # which is one more kill (the runs below catch up)
        code = daemon.proc.wait(120)
        assert code in (0, -signal.SIGTERM), f"{victim} exited {code}:\n{daemon.log.read_text()[-4000:]}"
    daemons["capture"].catch_up()
    for s in ("pg", "sqlite", "iceberg"):
        daemons[s].catch_up()

    # every serving table equals the source, row by row
    want = {t: {k: _normalize(v) for k, v in _source_rows(workload, t).items()} for t in KEYED}
    for s in ("pg", "sqlite"):
        config = load_config(configs[s], {"CDC_SOURCE_PASSWORD": password})
        sink_config = config.sinks[0]
        assert isinstance(sink_config, SqlSinkConfig)
        sink = create_sql_sink(sink_config, config.name)
        sink.open()
        try:
            for table in KEYED:
                got = {str(r["id"]): _normalize(r) for r in sink.read_rows(TableRef(db, table))}
                assert got.keys() == want[table].keys(), f"{s} {table}: keys differ"
                bad = [k for k in want[table] if got[k] != want[table][k]]
                assert not bad, f"{s} {table}: rows differ, e.g. {want[table][bad[0]]} vs {got[bad[0]]}"
            assert not sink.read_rows(TableRef(db, "keyless")), f"{s}: an excluded table was created"
        finally:
            sink.close()

    # the history holds each change exactly once
    reference = _reference_positions(stack, configs["capture"], start)
    iceberg = load_config(configs["iceberg"], {"CDC_SOURCE_PASSWORD": password}).sinks[0]
    for table in CAPTURED:
        history = read_history(iceberg.catalog, iceberg.namespace, TableRef(db, table))  # type: ignore[union-attr]
        positions = Counter(str(p) for p in history.rows.column("_position").to_pylist())
        expected = reference.get(table, Counter())
        assert expected, f"the workload made no change to {table}"
        missing, extra = expected - positions, positions - expected
        assert not missing and not extra, (
            f"history of {table}: {sum(missing.values())} rows missing, {sum(extra.values())} too many "
            f"(e.g. {next(iter(missing or extra))})"
        )

    # replaying the topics gives the source's rows
    state = replay(
        consume_all(stack.kafka.bootstrap_servers, pipeline_topics(stack.kafka.bootstrap_servers, name), 120)
    )
    for table in KEYED:
        rows = state.get(f"{db}.{table}", {})
        got_ids = sorted(json.loads(k)["id"] for k in rows)
        assert got_ids == sorted(int(k) for k in want[table]), f"replay of {table}: keys differ"
