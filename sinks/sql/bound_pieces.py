"""A collapsed batch's rows cut into pieces bounded in rows and in bytes, bound and sent one at a time.

MariaDB takes a batch's rows from Kafka as Python values (:mod:`sinks.sql.mariadb_columnar`,
through :func:`sinks.sql.sqlite_columnar.write_bound_rows`). Made for the whole batch at once, those
values, their tuples and pymysql's escaped text of every row (its multi-row statements up to 1 MB,
copied three times on the way to the socket) were all alive together: `cdc sink` into MariaDB
peaked at 203-206 MiB against 188-192 with the writes left out (200k changes, 5,000 per batch).
Made and sent a piece at a time, only one piece's are.

The pieces are written one after another in the batch's transaction, so what a batch commits, and
when, is unchanged. A piece holds at most :data:`PIECE_ROWS` rows and, past its first row, at most
:data:`PIECE_BYTES` of the values' estimated size: the byte length of text, binary and decimal
values (the forms the rows are bound from) plus :data:`_FIXED_BYTES` for any other value, so that a
few very wide rows make small pieces and narrow rows are not cut finer than they need.

The bounds: each piece is one more executemany (a round trip, and pymysql's statement; it cut
statements at 1 MB before). Applying 40 revision-like batches of 5,000 rows to MariaDB, 6
alternated rounds, CPU of the writing process: whole batches 13.5 us/row, pieces of 1,000 rows /
256 KiB 14.5, of 2,000 rows / 512 KiB 13.5; `cdc sink` peak RSS in probes 191.5 / 186.4 / 188.8 MiB.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["PIECE_BYTES", "PIECE_ROWS", "pieces"]

PIECE_ROWS = 2_000
PIECE_BYTES = 512 * 1024
# what a value of a fixed-width type (integer, float, date, timestamp) counts for
_FIXED_BYTES = 8


def pieces(
    rows: pa.Table, labels: Sequence[str], max_rows: int = PIECE_ROWS, max_bytes: int = PIECE_BYTES
) -> Iterator[pa.Table]:
    """``rows`` (its columns ``labels`` only) as consecutive slices, in order, each of at most
    ``max_rows`` rows and, unless one row alone exceeds it, ``max_bytes`` estimated bytes."""
    table = rows.select(list(labels))
    n = table.num_rows
    ends, fixed = _byte_ends(table)
    if ends is None:  # fixed-width values only: a row's size is the same for every row
        max_rows = min(max_rows, max(max_bytes // max(fixed, 1), 1))
    start = 0
    while start < n:
        end = min(start + max_rows, n)
        if ends is not None:
            # ends[i]: the estimated bytes of rows 0..i; the piece ends at the last row within budget
            before = ends[start - 1] if start else 0
            end = min(end, max(bisect.bisect_right(ends, before + max_bytes, start, end), start + 1))
        yield table.slice(start, end - start)
        start = end


def _byte_ends(table: pa.Table) -> tuple[list[int] | None, int]:
    """The running total of the rows' estimated sizes (None when every column is of a fixed-width
    type), and the estimated size of a row's fixed-width values."""
    sized: pa.ChunkedArray | None = None
    fixed = 0
    for column in table.columns:
        kind = column.type
        if pa.types.is_string(kind) or pa.types.is_binary(kind) or pa.types.is_large_string(kind):
            lengths = pc.fill_null(pc.binary_length(column), 0).cast(pa.int64())
            sized = lengths if sized is None else pc.add(sized, lengths)
        else:
            fixed += _FIXED_BYTES
    if sized is None:
        return None, fixed
    per_row: pa.ChunkedArray = pc.add(sized, fixed) if fixed else sized
    totals: list[int] = pc.cumulative_sum(per_row).to_pylist()
    return totals, fixed
