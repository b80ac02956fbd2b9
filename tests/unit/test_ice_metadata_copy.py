"""sinks/iceberg/pyiceberg_metadata_copy.py: the catalog builds a commit's metadata without deep-copying
the table's, and builds the same metadata pyiceberg does; the metadata it started from is unchanged."""

from __future__ import annotations

import copy
from pathlib import Path

import pyarrow as pa
import pyiceberg.catalog as pyiceberg_catalog
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table.update import update_table_metadata as pyiceberg_update_table_metadata

import sinks.iceberg  # noqa: F401 - installs the shortcut
from sinks.iceberg.pyiceberg_metadata_copy import update_table_metadata

_STAMP = {"last_updated_ms"}


def test_the_catalog_uses_the_shallow_copy() -> None:
    assert pyiceberg_catalog.update_table_metadata is update_table_metadata


def test_the_same_metadata_as_pyiceberg_and_the_base_unchanged(tmp_path: Path) -> None:
    catalog = SqlCatalog("c", uri=f"sqlite:///{tmp_path}/c.db", warehouse=(tmp_path / "wh").as_uri())
    catalog.create_namespace("n")
    table = catalog.create_table("n.t", schema=pa.schema([("id", pa.int64()), ("v", pa.string())]))
    data = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "v": pa.array(["a", "b", "c"])})
    for i in range(3):
        table.append(data, snapshot_properties={"headwater.position": f"p{i}"})
    txn = table.transaction()
    txn.set_properties(k="v")
    txn.append(data, snapshot_properties={"headwater.position": "p3"})
    base = table.metadata
    before = copy.deepcopy(base.model_dump())
    location = table.metadata_location
    ours = update_table_metadata(base, txn._updates, metadata_location=location)
    theirs = pyiceberg_update_table_metadata(base, txn._updates, metadata_location=location)
    assert ours.model_dump(exclude=_STAMP) == theirs.model_dump(exclude=_STAMP)
    assert len(ours.snapshots) == 4 and ours.properties["k"] == "v"
    assert base.model_dump() == before  # nothing of the base was changed
    assert ours is not base and ours.snapshots is not base.snapshots
    txn.commit_transaction()
    table.append(data)
    reread = catalog.load_table("n.t")
    assert len(reread.metadata.snapshots) == 5 and reread.properties["k"] == "v"
    assert reread.scan().to_arrow().num_rows == 15
    assert len(base.snapshots) == 3  # the old metadata object still says what it said
