"""Several `cdc sink` processes share one Iceberg catalog: starting them at once must not fail.

CI caught two sink processes of one consumer group both finding no progress table and both
creating it; the second died with ``TableAlreadyExistsError``. The same race exists for a history
table that two processes (holding different partitions of the same table's topic) create at once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cdc.core.events import Op
from sinks.iceberg import read_history
from tests.support.at_once import at_once
from tests.unit.test_iceberg_sink import batch, config, event, opened, schema


@pytest.mark.parametrize("attempt", range(4))
def test_sinks_opened_at_once_on_one_catalog_all_open(tmp_path: Path, attempt: int) -> None:
    cfg = config(tmp_path)
    assert at_once(range(6), lambda _i: opened(cfg).close()) == []


@pytest.mark.parametrize("attempt", range(4))
def test_history_table_first_written_by_several_sinks_at_once(tmp_path: Path, attempt: int) -> None:
    cfg = config(tmp_path)
    opened(cfg).close()  # the progress table exists; the history table does not
    s = schema()

    def write(i: int) -> None:
        sink = opened(cfg)
        try:
            sink.apply(batch(event(Op.CREATE, s, i + 1, (i, f"n{i}"))))
            sink.flush()
        finally:
            sink.close()

    assert at_once(range(4), write) == []
    history = read_history(cfg.catalog, cfg.namespace, "shop.items").rows
    assert sorted(history.column("id").to_pylist()) == [0, 1, 2, 3]
