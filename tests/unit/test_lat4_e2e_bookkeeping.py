"""benchmarks.e2e_probes.probe_reader takes the probe's (visible, ids, produced) batches into the
clock as the per-message loop did: every message in seq, and the capture half for the ids written."""

from __future__ import annotations

import queue
import threading
import time

from benchmarks.e2e_probes import Clock, probe_reader


def test_probe_batches_fill_the_clock_as_before() -> None:
    clock, found, stop = Clock(), queue.Queue[object](), threading.Event()
    clock.written_kafka.update({1: 1.0, 2: 1.5})  # 3 was written before the measured window
    found.put((5.0, [1, 2, 3], [2.0, 2.5, 3.0]))
    reader = threading.Thread(target=probe_reader, args=(found, clock, stop))
    reader.start()
    deadline = time.monotonic() + 5
    while len(clock.seq) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    reader.join(5)
    assert clock.seq == [(1, 5.0, 2.0), (2, 5.0, 2.5), (3, 5.0, 3.0)]
    assert clock.in_kafka == [(5.0, 4.0), (5.0, 3.5)]
    assert clock.produced == [(5.0, 1.0, 3.0), (5.0, 1.0, 2.5)]
    assert clock.written_kafka == {}
