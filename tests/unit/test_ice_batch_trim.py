"""cdc/daemon/memory_settings.BatchTrim: the pool's freed memory goes back to the system on every
n-th batch only (malloc_trim after each batch was ~20% of `cdc sink`'s CPU into Iceberg)."""

from __future__ import annotations

import subprocess
import sys

from cdc.daemon.memory_settings import TRIM_EVERY_BATCHES, BatchTrim


def test_trims_on_every_nth_batch_only() -> None:
    trim = BatchTrim(3)
    assert [trim.after_batch() for _ in range(7)] == [False, False, True, False, False, True, False]
    default = BatchTrim()
    assert default.every == TRIM_EVERY_BATCHES
    assert sum(default.after_batch() for _ in range(TRIM_EVERY_BATCHES * 2)) == 2
    assert all(BatchTrim(0).after_batch() for _ in range(3))  # at least every batch


def test_the_module_still_does_not_load_pyarrow() -> None:
    code = "import sys, cdc.daemon.memory_settings; print('pyarrow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
