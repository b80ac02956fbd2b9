"""``columnar_apply._ordinals`` when another thread replaces its array between the check and the slice.

Embedded mode makes a batch's tables on the daemon's thread (``SqlSink.prepare_columns``) while the
apply thread may make another batch's: both grow the one cached array. A thread must slice the
array it checked, not whichever the other thread stored last (a shorter one gave a short column).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from sinks.sql import columnar_apply


class _Raced(list[pa.Array]):
    """The cache list: right after a thread stores its array, the other thread stores a shorter one."""

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        super().__setitem__(slice(None), [pa.array(range(40_000), pa.int64())])


def test_a_thread_slices_the_array_it_made(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(columnar_apply, "_ORDINALS", _Raced())
    made = columnar_apply._ordinals(10, 70_000)
    assert len(made) == 70_000
    assert made[0].as_py() == 10 and made[-1].as_py() == 70_009


def test_slices_of_the_cached_array() -> None:
    assert columnar_apply._ordinals(5, 3).to_pylist() == [5, 6, 7]
    assert columnar_apply._ordinals(0, 0).to_pylist() == []
