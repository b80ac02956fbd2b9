"""Several `cdc sink` processes share one Iceberg catalog: starting them at once must not fail.

CI caught two sink processes of one consumer group both finding no progress table and both
creating it; the second died with ``TableAlreadyExistsError``. The same race exists for a history
table that two processes (holding different partitions of the same table's topic) create at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from cdc.core.events import Op
from sinks.iceberg import read_history
from tests.unit.test_iceberg_sink import batch, config, event, opened, schema


def _at_once(count: int, work: Callable[[int], None]) -> list[BaseException]:
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            work(i)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


@pytest.mark.parametrize("attempt", range(4))
def test_sinks_opened_at_once_on_one_catalog_all_open(tmp_path: Path, attempt: int) -> None:
    cfg = config(tmp_path)
    assert _at_once(6, lambda _i: opened(cfg).close()) == []


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

    assert _at_once(4, write) == []
    history = read_history(cfg.catalog, cfg.namespace, "shop.items").rows
    assert sorted(history.column("id").to_pylist()) == [0, 1, 2, 3]
