"""The history sink caps its own tables' snapshot count, whatever the commit rate (icemani).

Commits by ``commit_rows`` under a sustained load come about once a second; the hourly, age-based
expiry let a table hold thousands of snapshots, each making every commit dearer. The sink expires
the oldest past ``max_snapshots`` (plus a slack) itself, after its commits.
"""

from __future__ import annotations

from pathlib import Path

from cdc.core.events import Op
from sinks.contract import AppliedState
from sinks.iceberg.catalogs import open_catalog
from sinks.iceberg.history_schema import MANIFEST_MERGE_PROPERTIES
from tests.unit.test_iceberg_sink import batch, config, event, opened, pos, positions, schema, settle

TABLE = "hist.items__history"


def test_the_sink_keeps_its_tables_snapshots_under_the_cap(tmp_path: Path) -> None:
    cfg = config(tmp_path, commit_rows=1, max_snapshots=8)  # slack: 10 (the least)
    s = schema()
    sink = opened(cfg)
    most = 0
    commits = 40
    for seq in range(1, commits + 1):
        sink.apply(batch(event(Op.CREATE, s, seq, (seq, f"v{seq}"))))
        settle(sink)
        table = open_catalog(cfg.catalog).load_table(TABLE)
        most = max(most, len(table.metadata.snapshots))
    assert sink.applied() == AppliedState(pos(commits))
    sink.close()
    assert most <= 8 + 10, f"{most} snapshots held at once"
    reopened = opened(cfg)
    reopened.apply(batch(event(Op.CREATE, s, commits, (commits, "again"))))  # re-delivered
    reopened.flush()
    reopened.close()
    assert sorted(positions(cfg, "shop.items")) == sorted(pos(i).to_string() for i in range(1, commits + 1))


def test_the_sink_gives_a_table_from_before_the_merge_properties_when_it_opens_it(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    s = schema()
    sink = opened(cfg)
    sink.apply(batch(event(Op.CREATE, s, 1, (1, "a"))))
    sink.close()
    table = open_catalog(cfg.catalog).load_table(TABLE)
    with table.transaction() as txn:
        txn.remove_properties(*MANIFEST_MERGE_PROPERTIES)
    sink = opened(cfg)
    sink.apply(batch(event(Op.CREATE, s, 2, (2, "b"))))
    sink.close()
    table = open_catalog(cfg.catalog).load_table(TABLE)
    assert {k: table.properties.get(k) for k in MANIFEST_MERGE_PROPERTIES} == MANIFEST_MERGE_PROPERTIES
