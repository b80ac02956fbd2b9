"""Snapshot expiry reads each manifest once, not once per snapshot listing it (icesnap).

A history table gets one snapshot per commit, each listing every manifest of the earlier appends:
reading a manifest for every snapshot that lists it made expiry quadratic (200 snapshots: 22 s of
CPU; a day of 30 s commits: hours). A manifest file never changes, so reading it once is exact.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.manifest import ManifestFile

from sinks.iceberg.maintenance import _expirable
from sinks.iceberg.retention import expire_removing_files


def test_expiry_reads_each_manifest_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = SqlCatalog("t", uri=f"sqlite:///{tmp_path}/c.db", warehouse=(tmp_path / "wh").as_uri())
    catalog.create_namespace("n")
    table = catalog.create_table(("n", "t"), schema=pa.schema([("id", pa.int64())]))
    for i in range(30):  # 30 fast appends: snapshot i lists i + 1 manifests
        table.append(pa.table({"id": pa.array([i], pa.int64())}))
    deleted = {t.file.file_path for t in table.scan(row_filter="id < 10").plan_files()}
    table.delete("id < 10")  # their data files: only the expired snapshots reach them
    manifests = {m.manifest_path for s in table.metadata.snapshots for m in s.manifests(table.io)}
    reads: list[str] = []
    fetch = ManifestFile.fetch_manifest_entry

    def counted(self: ManifestFile, *args: object, **kwargs: object) -> object:
        reads.append(self.manifest_path)
        return fetch(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ManifestFile, "fetch_manifest_entry", counted)
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    removed = expire_removing_files(table, _expirable(table, future, 1))

    assert len(table.metadata.snapshots) == 1
    # once for what the expired snapshots reached, once for what the kept ones still reach
    assert len(reads) <= 2 * len(manifests), f"{len(reads)} manifest reads for {len(manifests)} manifests"
    assert len(deleted) == removed.data_files == 10
    assert not any(Path(p.removeprefix("file://")).exists() for p in deleted)
    assert sorted(table.scan().to_arrow().column("id").to_pylist()) == list(range(10, 30))
    live = {t.file.file_path for t in table.scan().plan_files()}
    assert all(Path(p.removeprefix("file://")).exists() for p in live)
