"""The dev stack's broker runs ZGC (cdc/devstack/kafka.py GC_FLAG): G1's stop-the-world young
collections took 78-629 ms on the shared 2-core machine and each one was a missed end-to-end p99."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cdc.devstack.kafka import GC_FLAG, Kafka
from cdc.devstack.settings import ServiceName, StackSettings


def test_the_broker_runs_one_collector_zgc(tmp_path: Path) -> None:
    kafka = Kafka(StackSettings(state_dir=tmp_path, services=(ServiceName.KAFKA,)))
    argv = kafka.argv()
    assert GC_FLAG == "-XX:+UseZGC"
    collectors = [arg for arg in argv if arg.startswith("-XX:+Use") and arg.endswith("GC")]
    assert collectors == [GC_FLAG], argv  # two collectors and the JVM refuses to start


def test_the_installed_java_has_zgc(tmp_path: Path) -> None:
    java = Kafka(StackSettings(state_dir=tmp_path, services=(ServiceName.KAFKA,))).java()
    done = subprocess.run([str(java), GC_FLAG, "-Xmx64m", "-version"], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
