"""Embedded mode's text columns of one repeated value: a chunk's ops and transaction ids.

In a chunk of a 1000-row statement every change has the op ``c`` and the statement's transaction id,
and ``pa.array`` converted each of those Python strings again: 0.052 and 0.048 us per change, against
0.003 and 0.023 here (micro bench: 1000-change chunks, min of 7, pinned, load 8; events_as_columns
as a whole is ~0.55-0.65, and the daemon thread builds it while the apply thread waits for
PostgreSQL on the same core). A text repeated n times is built from its bytes repeated and offsets
0, k, 2k, ... (a slice of one cached array). The arrays equal what ``pa.array`` gives
(``tests/unit/test_embpg2_meta_columns.py``); any other column goes to ``pa.array`` as before.
(``array.array`` for the timestamps was slower than ``pa.array``: 0.077 against 0.061.)
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["text_column"]

# 0, 1, 2, ... as int32: the offsets of a one-byte text repeated (the longest asked for, kept)
_STEPS: list[pa.Array] = []


def _steps(n: int) -> pa.Array:
    if not _STEPS or len(_STEPS[0]) < n + 1:
        _STEPS[:] = [pa.array(range(max(2 * (n + 1), 16_384)), pa.int32())]
    return _STEPS[0].slice(0, n + 1)


def _repeated(data: bytes, n: int) -> pa.Array:
    """``n`` times the text whose UTF-8 is ``data``, as ``pa.array([text] * n, pa.string())``."""
    steps = _steps(n)
    if len(data) != 1:
        steps = pc.multiply(steps, pa.scalar(len(data), pa.int32()))
    offsets = steps.buffers()[1].slice(steps.offset * 4, (n + 1) * 4)
    return pa.Array.from_buffers(pa.string(), n, [None, offsets, pa.py_buffer(data * n)])


def text_column(values: Sequence[object]) -> pa.Array:
    """``pa.array(values, pa.string())``; one str repeated (by equality) without converting each."""
    n = len(values)
    first = values[0] if n else None
    if isinstance(first, str) and first.__class__ is str and values.count(first) == n:
        try:  # (count compares by identity first: one pass, no hashing)
            data = first.encode("utf-8")
        except UnicodeEncodeError:
            data = b""  # a lone surrogate: pa.array refuses it, as before
        if data and len(data) * n < 2**31:  # int32 offsets, as pa.string()'s
            return _repeated(data, n)
    return pa.array(values, pa.string())
