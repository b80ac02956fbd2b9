"""icemem: Arrow's C++ default pool is the system allocator in a sink process that asks before
pyarrow loads (Parquet's writer allocates from that pool, never from pyarrow's default)."""

from __future__ import annotations

import os
import subprocess
import sys

_CHECK = """
import sys
{before}
from cdc.daemon.sink_runner import SinkRunner  # the `cdc sink` path: pyarrow and the sinks
import sinks.iceberg.history_sink
import pyarrow as pa
print(pa.default_memory_pool().backend_name)
"""


def _pool(before: str, **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    environment.update(env)
    done = subprocess.run(
        [sys.executable, "-c", _CHECK.format(before=before)],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def test_the_system_pool_from_the_start() -> None:
    before = "from cdc.daemon.memory_settings import system_pool_from_start; system_pool_from_start()"
    assert _pool(before) == "system"
    # without it, Arrow's own choice stays (mimalloc in pyarrow's wheels): what Parquet's writer used
    assert _pool("") != "system"


def test_the_operators_choice_wins() -> None:
    before = "from cdc.daemon.memory_settings import system_pool_from_start; system_pool_from_start()"
    assert _pool(before, ARROW_DEFAULT_MEMORY_POOL="jemalloc") == "jemalloc"


def test_memory_settings_does_not_load_pyarrow() -> None:
    code = "import sys, cdc.daemon.memory_settings; print('pyarrow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
