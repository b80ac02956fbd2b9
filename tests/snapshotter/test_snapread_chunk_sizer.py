"""ChunkSizer: toward the target time per chunk, by bounded steps, within [min_rows, max_rows]."""

from __future__ import annotations

import pytest

from snapshotter.chunk_sizer import ChunkSizer


def test_converges_to_the_target_rate_in_bounded_steps() -> None:
    sizer = ChunkSizer(target_s=0.5, min_rows=100, max_rows=1_000_000, initial_rows=1_000)
    rate = 200_000.0  # rows/s: the target is 100k rows per chunk
    limits = []
    for _ in range(12):
        limits.append(sizer.observe(sizer.limit, sizer.limit / rate))
    assert limits[:3] == [2_000, 4_000, 8_000]  # at most doubling per chunk
    assert limits[-1] == 100_000
    for _ in range(3):  # the server slows down tenfold: halving per chunk, then settling
        sizer.observe(sizer.limit, sizer.limit / (rate / 10))
    assert sizer.limit == 12_500
    for _ in range(10):
        sizer.observe(sizer.limit, sizer.limit / (rate / 10))
    assert sizer.limit == 10_000


def test_bounds_hold_and_a_short_last_chunk_says_nothing() -> None:
    sizer = ChunkSizer(target_s=0.5, min_rows=1_000, max_rows=5_000, initial_rows=4_000)
    assert sizer.observe(4_000, 0.001) == 5_000  # capped at max_rows
    assert sizer.observe(5_000, 0.001) == 5_000
    assert sizer.observe(10, 30.0) == 5_000  # fewer rows than asked: the table's end, not a rate
    for _ in range(10):
        sizer.observe(sizer.limit, 60.0)
    assert sizer.limit == 1_000  # floored at min_rows
    with pytest.raises(ValueError):
        ChunkSizer(min_rows=10, max_rows=5)
