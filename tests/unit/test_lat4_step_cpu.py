"""benchmarks.e2e_step_cpu: a step's CPU per process, per change, and the machine's rest."""

from __future__ import annotations

import os
import time

from benchmarks.e2e_step_cpu import StepCpu, describe


def _spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_a_step_counts_its_own_process_cpu_per_change() -> None:
    watch = StepCpu({"me": [os.getpid()], "nobody": [0]})
    watch.start()
    began = time.monotonic()
    _spin(0.2)
    cpu = watch.stop(changes=1000, seconds=time.monotonic() - began)
    assert "nobody" not in cpu  # no pid: left out, not zero
    assert 150 <= cpu["me"]["cpu_us_per_change"] <= 2000  # ~200 us of CPU per change
    assert cpu["machine"]["cores"] >= cpu["me"]["cores"] * 0.9
    assert cpu["rest"]["cores"] >= 0
    assert "me" in describe(cpu)


def test_a_pid_gone_by_the_end_is_left_out() -> None:
    watch = StepCpu({"gone": [2**22 + 12345], "me": [os.getpid()]})
    watch.start()
    cpu = watch.stop(changes=10, seconds=0.1)
    assert "gone" not in cpu and "me" in cpu
