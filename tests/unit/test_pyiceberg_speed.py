"""sinks/iceberg/pyiceberg_speed.py: Transaction.table_metadata cached between reads of one state,
and never stale once an update is staged or the table's metadata changes."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table import Transaction
from pyiceberg.table.update import update_table_metadata

import sinks.iceberg  # noqa: F401 - installs the cache
from sinks.iceberg.pyiceberg_speed import _cached_table_metadata


def test_reads_of_one_state_share_one_copy_and_a_staged_update_makes_a_new_one(tmp_path: Path) -> None:
    assert Transaction.__dict__["table_metadata"].fget is _cached_table_metadata
    catalog = SqlCatalog("c", uri=f"sqlite:///{tmp_path}/c.db", warehouse=(tmp_path / "wh").as_uri())
    catalog.create_namespace("n")
    table = catalog.create_table("n.t", schema=pa.schema([("id", pa.int64())]))
    data = pa.table({"id": pa.array([1, 2, 3], pa.int64())})
    table.append(data)
    txn = table.transaction()
    first = txn.table_metadata
    assert txn.table_metadata is first  # no second deep copy
    txn.set_properties(k="v")  # staged: a new tuple of updates
    staged = txn.table_metadata
    assert staged is not first and staged.properties["k"] == "v"
    rebuilt = update_table_metadata(table.metadata, txn._updates)  # what pyiceberg would build
    # (but for the time of building it, which an update stamps)
    assert staged.model_dump(exclude={"last_updated_ms"}) == rebuilt.model_dump(exclude={"last_updated_ms"})
    txn.commit_transaction()
    table.append(data)  # the table's metadata object is replaced by each commit
    assert len(table.transaction().table_metadata.snapshots) == 2
    assert catalog.load_table("n.t").scan().to_arrow().num_rows == 6
