"""benchmarks.e2e_probes.probe_reader takes the probe's (visible, ids, produced, upto) batches into
the clock as the per-message loop did: every message in seq, and the capture half for the ids
written; a sparse batch (the rate steps: its last message only) stands for every id up to it."""

from __future__ import annotations

import queue
import threading
import time

from benchmarks.e2e_probes import Clock, probe_reader


def _read(clock: Clock, *batches: tuple[float, list[int], list[float], bool]) -> None:
    found, stop = queue.Queue[object](), threading.Event()
    for batch in batches:
        found.put(batch)
    reader = threading.Thread(target=probe_reader, args=(found, clock, stop))
    reader.start()
    deadline = time.monotonic() + 5
    while not found.empty() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    stop.set()
    reader.join(5)


def test_probe_batches_fill_the_clock_as_before() -> None:
    clock = Clock()
    clock.written_kafka.update({1: 1.0, 2: 1.5})  # 3 was written before the measured window
    _read(clock, (5.0, [1, 2, 3], [2.0, 2.5, 3.0], False))
    assert clock.seq == [(1, 5.0, 2.0), (2, 5.0, 2.5), (3, 5.0, 3.0)]
    assert clock.in_kafka == [(5.0, 4.0), (5.0, 3.5)]
    assert clock.produced == [(5.0, 1.0, 3.0), (5.0, 1.0, 2.5)]
    assert clock.written_kafka == {}


def test_a_sparse_batch_stands_for_every_id_up_to_its_last() -> None:
    clock = Clock()
    clock.written_kafka.update({i: float(i) for i in range(1, 8)})
    _read(clock, (10.0, [1, 2], [1.5, 2.5], False), (20.0, [6], [6.5], True))
    assert clock.in_kafka == [
        (10.0, 9.0),
        (10.0, 8.0),
        (20.0, 17.0),
        (20.0, 16.0),
        (20.0, 15.0),
        (20.0, 14.0),
    ]
    assert clock.written_kafka == {7: 7.0}  # not visible yet
    assert len(clock.seq) == 2  # the steps keep no per-message sequence
