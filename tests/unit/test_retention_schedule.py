"""The daemon's maintenance job applies `catalog:` retention; unreferenced files are removed once old."""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from pathlib import Path

import pytest

from cdc.config.models import CatalogConfig
from cdc.core.errors import ConfigError
from cdc.core.events import Op
from cdc.daemon.maintenance_schedule import run_maintenance
from sinks.iceberg import create_iceberg_sink, state_as_of
from sinks.iceberg.catalogs import open_catalog
from tests.unit.test_iceberg_sink import batch, config, event, pos, schema

DAY_MS = 86_400_000


def test_scheduled_maintenance_applies_retention_and_removes_old_orphans(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink_config = config(tmp_path)
    now = int(time.time() * 1000)
    s = schema()
    sink = create_iceberg_sink(sink_config, "p")
    sink.open()
    try:
        sink.apply(batch(event(Op.CREATE, s, 1, (1, "old"), ts_ms=now - 200 * DAY_MS)))
        sink.flush()
        sink.apply(batch(event(Op.CREATE, s, 2, (2, "new"), ts_ms=now)))
        sink.flush()
    finally:
        sink.close()
    table = open_catalog(sink_config.catalog).load_table("hist.items__history")
    data = Path(table.location().removeprefix("file://")) / "data"
    stale, fresh = data / "stale-orphan.parquet", data / "fresh-orphan.parquet"
    for orphan in (stale, fresh):
        orphan.write_bytes(b"left by a failed commit")
    two_days_ago = time.time() - 2 * 86_400
    os.utime(stale, (two_days_ago, two_days_ago))

    catalog = CatalogConfig.model_validate({"tables": {"shop.items": {"history_retention_days": 90}}})
    with caplog.at_level(logging.INFO):
        run_maintenance(sink_config, "p", catalog)

    table = open_catalog(sink_config.catalog).load_table("hist.items__history")
    assert [r["id"] for r in table.scan().to_arrow().to_pylist()] == [2]
    assert not stale.exists() and fresh.exists()  # a young unreferenced file may be a commit in flight
    assert "1 rows deleted by retention" in caplog.text
    horizon = dt.datetime.fromisoformat(table.properties["headwater.retention-horizon"])
    assert abs((dt.datetime.now(dt.UTC) - horizon) - dt.timedelta(days=90)) < dt.timedelta(minutes=5)
    # as-of reads: a position retention deleted is refused, naming the horizon; later ones are served
    with pytest.raises(ConfigError, match=r"shop\.items: position .* is before the retention horizon"):
        state_as_of(sink_config.catalog, "hist", "shop.items", pos(1))
    assert state_as_of(sink_config.catalog, "hist", "shop.items", pos(2)).num_rows == 1
    with pytest.raises(ConfigError, match="before the retention horizon"):  # a naive time is UTC
        state_as_of(sink_config.catalog, "hist", "shop.items", dt.datetime(2000, 1, 1))


def test_a_tagged_old_snapshot_is_kept_and_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sink_config = config(tmp_path)
    now = int(time.time() * 1000)
    sink = create_iceberg_sink(sink_config, "p")
    sink.open()
    try:
        sink.apply(batch(event(Op.CREATE, schema(), 1, (1, "old"), ts_ms=now - 200 * DAY_MS)))
        sink.flush()
    finally:
        sink.close()
    table = open_catalog(sink_config.catalog).load_table("hist.items__history")
    snapshot = table.current_snapshot()
    assert snapshot is not None
    table.manage_snapshots().create_tag(snapshot.snapshot_id, "audit-2026").commit()

    catalog = CatalogConfig.model_validate({"history_retention_days": 90})
    with caplog.at_level(logging.INFO):
        run_maintenance(sink_config, "p", catalog)

    assert "1 rows deleted by retention" in caplog.text
    assert "branches or tags audit-2026 still reference snapshots" in caplog.text
    table = open_catalog(sink_config.catalog).load_table("hist.items__history")
    assert table.scan().count() == 0
