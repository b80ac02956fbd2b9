"""The daemons' collection lines (cdc/daemon/gc_timing.py) are what benchmarks/e2e_stalls.py reads
back to line collections up with the end-to-end run's slow episodes."""

from __future__ import annotations

import gc
import logging
from pathlib import Path

import pytest

from benchmarks.e2e_stalls import gc_pauses
from cdc.daemon.gc_timing import log_collections


def test_a_collection_is_logged_and_read_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("cdc.test.hop3.gc")
    log.setLevel(logging.DEBUG)
    log_collections(log, min_ms=0.0)
    log_collections(log, min_ms=0.0)  # once per log: one line per collection, not two
    try:
        with caplog.at_level(logging.DEBUG, logger=log.name):
            gc.collect()
        lines = [r.getMessage() for r in caplog.records if r.name == log.name]
    finally:
        gc.callbacks[:] = [
            cb for cb in gc.callbacks if getattr(cb, "__qualname__", "").split(".")[0] != "log_collections"
        ]
    assert len(lines) == 1 and lines[0].startswith("gc gen=2 start="), lines
    path = tmp_path / "sink.log"
    path.write_text(f"2026-12-01 16:52:31,995 DEBUG {log.name}: {lines[0]}\n")
    (found,) = gc_pauses({"cdc_sink": path})["cdc_sink"]
    assert found[1] == 2 and found[2] >= 0.0
