"""HEADWATER_QUIET_GAP_MS replaces capture's quiet gap (an A/B switch for benchmarks.e2e, read at
import); unset or unreadable, the gap is 12 ms."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _gap(value: str | None) -> float:
    env = {k: v for k, v in os.environ.items() if k != "HEADWATER_QUIET_GAP_MS"}
    if value is not None:
        env["HEADWATER_QUIET_GAP_MS"] = value
    out = subprocess.run(
        [sys.executable, "-c", "from cdc.daemon.capture import QUIET_GAP_S; print(QUIET_GAP_S)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return float(out.stdout)


@pytest.mark.parametrize(("value", "gap"), [(None, 0.012), ("25", 0.025), ("x", 0.012), ("-3", 0.0)])
def test_the_switch_replaces_the_gap(value: str | None, gap: float) -> None:
    assert _gap(value) == pytest.approx(gap)
