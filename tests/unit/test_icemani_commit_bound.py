"""A history table's commit cost stays bounded: manifests merged, snapshots capped (icemani).

Every commit used to add a manifest (until its day was compacted) and a snapshot (until the hourly
expiry); each costs CPU on every later commit (``benchmarks/iceberg_sustained_commits.py``). These
drive the real sink (local SQL catalog and warehouse) through many one-row commits and check the
counts stay bounded, and that what the sink and ``cdc history --at`` read survives merges and
expiry: the applied position, every row once, no duplicate after a restart, fencing.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from cdc.core.errors import WriterFenced
from cdc.core.events import Op
from sinks.contract import AppliedState, WriterIdentity
from sinks.iceberg import maintain
from sinks.iceberg.as_of import history_rows_as_of
from sinks.iceberg.catalogs import open_catalog
from sinks.iceberg.history_schema import MANIFEST_MERGE_PROPERTIES
from sinks.iceberg.retention import expire_removing_files
from sinks.iceberg.snapshot_bound import SnapshotBound, ensure_commit_properties
from tests.unit.test_iceberg_sink import batch, config, event, opened, pos, positions, schema, settle

TABLE = "hist.items__history"
MIN_MERGE_KEY = "commit.manifest.min-count-to-merge"


def _manifests(cfg: object) -> int:
    table = open_catalog(cfg.catalog).load_table(TABLE)  # type: ignore[attr-defined]
    current = table.current_snapshot()
    assert current is not None
    return len(current.manifests(table.io))


def _ids_as_of(cfg: object, seq: int) -> list[int]:
    rows = history_rows_as_of(cfg, "pipe", "shop.items", pos(seq).to_string())  # type: ignore[arg-type]
    return sorted(int(i) for i in rows.column("id").to_pylist())


def test_a_history_table_merges_its_manifests_and_keeps_every_row(tmp_path: Path) -> None:
    cfg = config(tmp_path, commit_rows=1)  # every change is a commit
    s = schema()
    sink = opened(cfg)
    sink.apply(batch(event(Op.CREATE, s, 1, (1, "v1"))))
    settle(sink)
    table = open_catalog(cfg.catalog).load_table(TABLE)
    for key, value in MANIFEST_MERGE_PROPERTIES.items():  # what a new history table is created with
        assert table.properties.get(key) == value
    # merged at 8 manifests rather than the default 100, to keep the test short (same code path)
    table.transaction().set_properties({MIN_MERGE_KEY: "8"}).commit_transaction()
    commits = 30
    most = 0
    for seq in range(2, commits + 1):
        sink.apply(batch(event(Op.CREATE, s, seq, (seq, f"v{seq}"))))
        settle(sink)
        most = max(most, _manifests(cfg))
    sink.close()

    table = open_catalog(cfg.catalog).load_table(TABLE)
    assert most <= 8, f"{most} manifests listed at once"
    assert len(table.metadata.snapshots) == commits  # nothing expired yet: merging is not expiry
    assert sorted(positions(cfg, "shop.items")) == sorted(pos(i).to_string() for i in range(1, commits + 1))
    assert _ids_as_of(cfg, 12) == list(range(1, 13))  # `cdc history --at` after merges

    # maintenance caps the count whatever the snapshots' age (all are younger than its hour)
    report = maintain(cfg, "pipe", max_snapshots=10)
    assert not report.tables[0].failed
    table = open_catalog(cfg.catalog).load_table(TABLE)
    assert len(table.metadata.snapshots) == 10
    assert report.tables[0].files_removed > 0  # the expired snapshots' manifest lists at least
    assert _ids_as_of(cfg, commits) == list(range(1, commits + 1))
    assert _ids_as_of(cfg, 12) == list(range(1, 13))  # a position before the kept snapshots: rows tell

    reopened = opened(cfg)  # embedded mode: the reopened sink resumes from its stored position
    assert reopened.applied() == AppliedState(pos(commits))
    reopened.apply(batch(event(Op.CREATE, s, commits, (commits, f"v{commits}"))))  # re-delivered
    reopened.apply(batch(event(Op.CREATE, s, commits + 1, (commits + 1, "new"))))
    reopened.flush()
    reopened.close()
    assert sorted(positions(cfg, "shop.items")) == sorted(pos(i).to_string() for i in range(1, commits + 2))


def test_the_snapshot_cap_keeps_the_count_bounded_and_the_sinks_state(tmp_path: Path) -> None:
    cfg = config(tmp_path, commit_rows=1)
    s = schema()
    sink = opened(cfg)
    cap = SnapshotBound(10, slack=3)
    table = None
    most = 0
    commits = 30
    for seq in range(1, commits + 1):
        sink.apply(batch(event(Op.CREATE, s, seq, (seq, f"v{seq}"))))
        settle(sink)
        # the cap between the sink's commits on another handle of the table, as another process would:
        # the sink's next append conflicts and is retried on top of it (no rows of another writer)
        table = open_catalog(cfg.catalog).load_table(TABLE) if table is None else table
        table.refresh()
        cap.after_commit([(TABLE, table)])
        most = max(most, len(table.metadata.snapshots))
    assert sink.applied() == AppliedState(pos(commits))
    sink.close()

    assert most <= 10 + 3, f"{most} snapshots held at once"
    assert cap.expired >= commits - 13
    assert table is not None
    table.refresh()
    # the expired snapshots' files left storage: one manifest list per snapshot held, no more
    metadata = Path(table.location().removeprefix("file://")) / "metadata"
    assert len(list(metadata.glob("snap-*.avro"))) == len(table.metadata.snapshots)
    assert _ids_as_of(cfg, 20) == list(range(1, 21))
    assert sorted(positions(cfg, "shop.items")) == sorted(pos(i).to_string() for i in range(1, commits + 1))

    reopened = opened(cfg)
    assert reopened.applied() == AppliedState(pos(commits))
    reopened.apply(batch(event(Op.CREATE, s, commits, (commits, f"v{commits}"))))  # re-delivered
    reopened.flush()
    reopened.close()
    assert len(positions(cfg, "shop.items")) == commits  # no duplicate


def test_a_fenced_writer_still_lands_nothing_after_merges_and_the_cap(tmp_path: Path) -> None:
    cfg = config(tmp_path, commit_rows=1)
    s = schema()
    first = opened(cfg)
    first.claim_writer(WriterIdentity("host-a", 1, "2026-12-01T04:00:00+00:00"))
    cap = SnapshotBound(5, slack=2)
    for seq in range(1, 21):
        first.apply(batch(event(Op.CREATE, s, seq, (seq, "a"))))
        settle(first)
        cap.after_commit([(TABLE, first._writers[s.ref].table)])  # the sink's own handle, its thread idle
    second = opened(cfg)
    second.claim_writer(WriterIdentity("host-b", 2, "2026-12-01T05:00:00+00:00"))
    with pytest.raises(WriterFenced):
        first.apply(batch(event(Op.CREATE, s, 21, (21, "a"))))
        first.flush()
    second.apply(batch(event(Op.CREATE, s, 21, (21, "b"))))
    second.flush()
    second.close()
    assert sorted(positions(cfg, "shop.items")) == sorted(pos(i).to_string() for i in range(1, 22))
    rows = history_rows_as_of(cfg, "pipe", "shop.items", pos(21).to_string()).to_pylist()
    assert [r["name"] for r in rows if int(r["id"]) == 21] == ["b"]  # the second writer's row, once


def test_tables_from_before_get_the_merge_properties_from_maintenance(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    s = schema()
    sink = opened(cfg)
    sink.apply(batch(event(Op.CREATE, s, 1, (1, "a"))))
    sink.flush()
    table = open_catalog(cfg.catalog).load_table(TABLE)
    with table.transaction() as txn:  # a table created before manifest merging
        txn.remove_properties(*MANIFEST_MERGE_PROPERTIES)
    assert "commit.manifest-merge.enabled" not in open_catalog(cfg.catalog).load_table(TABLE).properties

    maintain(cfg, "pipe", now=dt.datetime.now(dt.UTC))
    table = open_catalog(cfg.catalog).load_table(TABLE)
    assert {k: table.properties.get(k) for k in MANIFEST_MERGE_PROPERTIES} == MANIFEST_MERGE_PROPERTIES
    assert not ensure_commit_properties(table, TABLE)  # set once: nothing more to commit
    sink.apply(batch(event(Op.CREATE, s, 2, (2, "b"))))  # the sink's stale handle retries on top
    sink.flush()
    sink.close()
    assert sorted(positions(cfg, "shop.items")) == [pos(1).to_string(), pos(2).to_string()]


def test_expiry_reading_only_the_oldest_kept_snapshot_still_keeps_every_live_file(tmp_path: Path) -> None:
    """Expiry reads the files of the one snapshot every kept one descends from, not of each kept one;
    an expired snapshot that descends from it (a rolled-back commit) makes it read them all."""
    cfg = config(tmp_path)
    catalog = open_catalog(cfg.catalog)
    catalog.create_namespace("plain")
    data = [pa.table({"id": pa.array([i], pa.int64())}) for i in range(7)]
    table = catalog.create_table("plain.t", schema=data[0].schema)
    ids = []
    for i in range(1, 5):  # s1..s4
        table.append(data[i])
        ids.append(table.current_snapshot().snapshot_id)  # type: ignore[union-attr]
    table.append(data[5])  # s5, then rolled back: s4 gets another child, s6
    s5 = table.current_snapshot().snapshot_id  # type: ignore[union-attr]
    table.manage_snapshots().rollback_to_snapshot(ids[3]).commit()
    table.append(data[6])
    # s3 is the oldest kept; s5 (expired) shares s4's file with s4 and s6 (kept)
    removed = expire_removing_files(table, [ids[0], ids[1], s5])
    assert sorted(table.scan().to_arrow().column("id").to_pylist()) == [1, 2, 3, 4, 6]
    assert removed.data_files == 1  # s5's own file only
    # a plain chain: the oldest kept one is read alone, and what only the expired ones held goes
    table.delete("id = 1")
    table.append(data[0])
    removed = expire_removing_files(table, [ids[2], ids[3]])
    assert sorted(table.scan().to_arrow().column("id").to_pylist()) == [0, 2, 3, 4, 6]


def test_the_cap_brings_a_long_history_down_a_batch_per_commit(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    catalog = open_catalog(cfg.catalog)
    catalog.create_namespace("plain")
    table = catalog.create_table("plain.t", schema=pa.schema([("id", pa.int64())]))
    for i in range(30):  # a table from before the cap
        table.append(pa.table({"id": pa.array([i], pa.int64())}))
    oldest = [s.snapshot_id for s in table.metadata.snapshots]
    cap = SnapshotBound(5, slack=1, most=10)
    cap.after_commit([("plain.t", table)])
    assert [s.snapshot_id for s in table.metadata.snapshots] == oldest[10:]  # the oldest ten went
    cap.after_commit([("plain.t", table)])
    cap.after_commit([("plain.t", table)])
    assert len(table.metadata.snapshots) == 5
    assert sorted(table.scan().to_arrow().column("id").to_pylist()) == list(range(30))
