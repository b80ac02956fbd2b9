"""An opened Iceberg sink has pyiceberg make its pool with one thread (sinks/iceberg/pyiceberg_workers.py),
unless the operator set pyiceberg's own ``max-workers``; each case in a fresh process (the pool is
process-wide)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_OPEN_AND_COUNT = """
import sys
from pathlib import Path
from cdc.config.models import IcebergSinkConfig
from sinks.iceberg import create_iceberg_sink
from pyiceberg.utils.concurrent import ExecutorFactory
tmp = Path(sys.argv[1])
config = IcebergSinkConfig(
    catalog={"type": "sql", "uri": f"sqlite:///{tmp / 'c.db'}", "warehouse": (tmp / "w").as_uri()},
    namespace="workers",
)
sink = create_iceberg_sink(config, "workers")
sink.open()
print(ExecutorFactory.get_or_create()._max_workers)
sink.close()
"""


def _workers(tmp_path: Path, env: dict[str, str]) -> int:
    clean = {k: v for k, v in os.environ.items() if k != "PYICEBERG_MAX_WORKERS"}
    done = subprocess.run(
        [sys.executable, "-c", _OPEN_AND_COUNT, str(tmp_path)],
        env={**clean, "HOME": str(tmp_path), **env},  # no ~/.pyiceberg.yaml
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.strip().splitlines()[-1])


def test_sink_process_gets_one_pyiceberg_worker(tmp_path: Path) -> None:
    assert _workers(tmp_path, {}) == 1


def test_operator_setting_wins(tmp_path: Path) -> None:
    assert _workers(tmp_path, {"PYICEBERG_MAX_WORKERS": "3"}) == 3
