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
import time
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


def test_rows_sent_later_at_the_same_boundary_are_not_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a quiet server a restart resumes exactly at the boundary where the bootstrap's rows went
    out; a repair sent then must number its rows after them, or the sinks (which hold positions up to
    the bootstrap's last row there) skip it as already applied."""
    from cdc.devstack.private_mariadb import PrivateMariaDb

    with PrivateMariaDb(tmp_path / "db") as server:
        m = server.connection()
        with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE quiet")
            cur.execute("USE quiet")
            cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))")
            cur.execute("INSERT INTO t SELECT seq, 'row' FROM seq_1_to_500")
        config_path = tmp_path / "cdc.yaml"
        config_path.write_text(
            "name: quiet\n"
            f"source: {{host: {m.host}, port: {m.port}, user: {m.user}, password: '${{CDC_SOURCE_PASSWORD}}',"
            f" server_id: {random.randint(5_000_000, 5_900_000)}, tables: ['quiet.*'],"
            " heartbeat_seconds: 1}\n"
            f"sinks:\n  - {{type: sql, url: 'sqlite:///{tmp_path / 'serving.db'}'}}\n"
            "bootstrap: {mode: initial}\n"
            f"state_dir: {tmp_path / 'state'}\n"
        )
        daemon = Daemon(config_path, tmp_path / "run.log", "run", m.password)
        daemon.catch_up()  # bootstraps 500 rows
        idle = daemon.start()  # nothing new: heartbeats make an idle checkpoint at that very boundary
        time.sleep(3.5)
        idle.terminate()
        idle.wait(30)
        serving = sa.create_engine(f"sqlite:///{tmp_path / 'serving.db'}")
        with serving.begin() as conn:
            conn.execute(sa.text("UPDATE t SET v = 'drifted' WHERE id = 7"))
        monkeypatch.setenv("CDC_SOURCE_PASSWORD", m.password)
        assert repair_through_stream(load_config(config_path), {TableRef("quiet", "t"): ((7,),)}) == 0
        with serving.connect() as conn:
            assert conn.execute(sa.text("SELECT v FROM t WHERE id = 7")).scalar_one() == "row"
        serving.dispose()
