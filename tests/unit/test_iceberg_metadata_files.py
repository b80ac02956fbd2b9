"""A history table's and the progress table's old metadata JSON files do not pile up.

Each Iceberg commit writes a new ``*.metadata.json`` holding every snapshot's entry; nothing removed
the old ones (about 17 GB a day per table at a commit a second with the snapshot cap). The tables
now carry Iceberg's ``write.metadata.delete-after-commit.enabled`` and
``write.metadata.previous-versions-max``, so pyiceberg keeps the newest few after each commit.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cdc.core.events import Op
from sinks.contract import AppliedState
from sinks.iceberg.catalogs import open_catalog
from sinks.iceberg.history_schema import COMMIT_PROPERTIES, METADATA_FILES_PROPERTIES
from tests.unit.test_iceberg_sink import batch, config, event, opened, pos, positions, schema, settle

TABLE = "hist.items__history"
KEEP = 5  # previous versions kept (the default is 100: too many commits for a unit test)


def metadata_files(tmp_path: Path, table: str) -> list[Path]:
    return sorted((tmp_path / "wh").rglob(f"{table}*/metadata/*.metadata.json"))


@pytest.fixture
def few_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    for properties in (METADATA_FILES_PROPERTIES, COMMIT_PROPERTIES):
        monkeypatch.setitem(properties, "write.metadata.previous-versions-max", str(KEEP))


def test_old_metadata_files_are_deleted_after_commits(tmp_path: Path, few_versions: None) -> None:
    cfg = config(tmp_path, commit_rows=1)
    s = schema()
    sink = opened(cfg)
    commits = 25
    for seq in range(1, commits + 1):
        sink.apply(batch(event(Op.CREATE, s, seq, (seq, f"v{seq}"))))
        settle(sink)
    assert sink.applied() == AppliedState(pos(commits))
    sink.close()
    for table in ("items__history", "_headwater_progress"):
        found = metadata_files(tmp_path, table)
        assert found, f"no metadata files found for {table} under {tmp_path / 'wh'}"
        assert len(found) <= KEEP + 1, f"{table}: {len(found)} metadata files after {commits} commits"
    # the rows and the position are intact, and a restart re-delivering the last change adds nothing
    reopened = opened(cfg)
    reopened.apply(batch(event(Op.CREATE, s, commits, (commits, "again"))))
    reopened.flush()
    reopened.close()
    assert sorted(positions(cfg, "shop.items")) == sorted(pos(i).to_string() for i in range(1, commits + 1))


def test_tables_from_before_get_the_properties_on_open(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    s = schema()
    sink = opened(cfg)
    sink.apply(batch(event(Op.CREATE, s, 1, (1, "a"))))
    sink.close()
    catalog = open_catalog(cfg.catalog)
    for name in (TABLE, *[f"hist.{t[1]}" for t in catalog.list_tables("hist") if "progress" in t[1]]):
        with catalog.load_table(name).transaction() as txn:
            txn.remove_properties(*METADATA_FILES_PROPERTIES)
    sink = opened(cfg)
    sink.apply(batch(event(Op.CREATE, s, 2, (2, "b"))))
    sink.close()
    for ident in catalog.list_tables("hist"):
        table = catalog.load_table(ident)
        got = {k: table.properties.get(k) for k in METADATA_FILES_PROPERTIES}
        assert got == METADATA_FILES_PROPERTIES, f"{ident}: {got}"
