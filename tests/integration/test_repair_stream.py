"""Repairs through the stream (issue 10): corrective changes reach every sink and every Kafka consumer.

Drift is injected straight into a serving copy (a row missing, a row changed, a row the source never
had). ``repair_through_stream`` (what `cdc reconcile --repair` calls) reads those keys again from the
source in one consistent view and sends them through the pipeline's normal path: the serving copy
ends equal to the source, the Iceberg history records the repair (op r for rows read again, op d for
the row the source lacks), and in Kafka mode a consumer of the topics sees them, marked
``source.snapshot: "repair"``.
"""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdc.bootstrap_command import repair_through_stream
from cdc.config import load_config
from cdc.config.models import IcebergSinkConfig
from cdc.core.schemas import TableRef
from cdc.devstack.connections import StackConnections
from sinks.iceberg import read_history
from sinks.iceberg.history_schema import to_source_values
from tests.integration.test_bootstrap_stream import ItemsWorkload, source_rows, verify_serving, write_config
from tests.support.kafka_replay import change_events, consume_all, pipeline_topics
from tests.support.workload import Daemon

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("kafka", [False, True], ids=["embedded", "kafka"])
def test_repair_reaches_every_copy_and_consumer(
    stack: StackConnections, tmp_path: Path, kafka: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    suffix = uuid.uuid4().hex[:8]
    workload = ItemsWorkload(stack, f"repair_{suffix}", random.randrange(1 << 30))
    workload.create()
    name = f"repair-{suffix}"
    config_path = write_config(tmp_path, stack, name, workload.db, kafka=kafka, mode="initial")
    run = Daemon(config_path, tmp_path / "run.log", "run", stack.mariadb.password)
    sink = Daemon(config_path, tmp_path / "sink.log", "sink", stack.mariadb.password)
    run.catch_up()  # the first start bootstraps the prefilled rows
    if kafka:
        sink.catch_up()
    verify_serving(config_path, workload)

    # drift, straight into the serving copy (SQLite): missing, changed, extra
    serving = sa.create_engine(f"sqlite:///{tmp_path / 'serving.db'}")
    with serving.begin() as conn:
        conn.execute(sa.text("DELETE FROM accounts WHERE id = 5"))
        conn.execute(sa.text("UPDATE accounts SET v = 'drifted' WHERE id = 6"))
        conn.execute(sa.text("INSERT INTO accounts (id, ver, v) VALUES (99999, 1, 'extra')"))
    serving.dispose()
    with pytest.raises(AssertionError):
        verify_serving(config_path, workload)

    monkeypatch.setenv("CDC_SOURCE_PASSWORD", stack.mariadb.password)
    config = load_config(config_path)
    ref = TableRef(workload.db, "accounts")
    assert repair_through_stream(config, {ref: ((5,), (6,), (99999,))}) == 0
    if kafka:
        sink.catch_up()
    verify_serving(config_path, workload)

    iceberg = next(s for s in config.sinks if isinstance(s, IcebergSinkConfig))
    found = read_history(iceberg.catalog, iceberg.namespace, ref)
    rows = to_source_values(found.rows, found.column_kinds)
    repairs = sorted((int(r["id"]), str(r["_op"])) for r in rows if str(r["_txn"]).startswith("repair-"))
    assert repairs == [(5, "r"), (6, "r"), (99999, "d")], repairs
    want = source_rows(workload, "accounts")
    assert 99999 not in want and want[6]["v"] != "drifted"

    if kafka:
        topics = [t for t in pipeline_topics(stack.kafka.bootstrap_servers, name) if t.endswith(".accounts")]
        events = change_events(consume_all(stack.kafka.bootstrap_servers, topics))
        marked = sorted(
            (e.value["after"] or e.value["before"])["id"]
            for e in events
            if e.value and e.value["source"]["snapshot"] == "repair"
        )
        assert marked == [5, 6, 99999], marked
