"""`cdc sink` and `cdc run` choose Arrow's pool before anything loads pyarrow (cdc/daemon/memory_settings.py).

The command is run in a fresh interpreter up to the point where it reads its config; what pyarrow
would pick then is what the sinks' Parquet writer gets."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_RUN_UNTIL_CONFIG = """
import os, sys
from click.testing import CliRunner
import cdc.cli

def stop_at_config(path):
    print("pyarrow loaded:", "pyarrow" in sys.modules)
    print("pool:", os.environ.get("ARROW_DEFAULT_MEMORY_POOL"))
    raise SystemExit(0)

cdc.cli.load_or_exit = stop_at_config
result = CliRunner().invoke(cdc.cli.main, ["{command}", "-c", "configs/kafka.yaml"], standalone_mode=False)
sys.stdout.write(result.output)
"""


@pytest.mark.parametrize("command", ["sink", "run"])
def test_the_system_pool_is_set_before_pyarrow_loads(command: str) -> None:
    environment = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    done = subprocess.run(
        [sys.executable, "-c", _RUN_UNTIL_CONFIG.replace("{command}", command)],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
    )
    assert done.stdout.splitlines() == ["pyarrow loaded: False", "pool: system"], done.stderr
