"""sinks/sql/bound_pieces.py: a collapsed batch's rows cut into pieces bounded in rows and bytes."""

from __future__ import annotations

import pyarrow as pa

from sinks.sql.bound_pieces import pieces


def _table(bodies: list[str | None]) -> pa.Table:
    n = len(bodies)
    # two chunks, as a batch's concatenated chunks are
    ids = pa.chunked_array([pa.array(range(n // 2), pa.int64()), pa.array(range(n // 2, n), pa.int64())])
    texts = pa.chunked_array(
        [pa.array(bodies[: n // 2], pa.string()), pa.array(bodies[n // 2 :], pa.string())]
    )
    return pa.table({"c0": ids, "c1": texts, "other": pa.array([1.5] * n)})


def test_the_pieces_are_the_rows_in_order_within_both_bounds() -> None:
    bodies: list[str | None] = ["x" * 100] * 3000 + [None] * 2500 + ["é" * 500] * 1500
    table = _table(bodies)
    cut = list(pieces(table, ["c0", "c1"], max_rows=1000, max_bytes=64 * 1024))
    assert all(p.column_names == ["c0", "c1"] for p in cut)
    assert pa.concat_tables(cut).column("c0").to_pylist() == list(range(len(bodies)))
    for p in cut:
        size = sum(8 + len((b or "").encode()) for b in p.column("c1").to_pylist())
        assert p.num_rows <= 1000
        assert size <= 64 * 1024 or p.num_rows == 1
    assert [p.num_rows for p in cut[:2]] == [65536 // 108] * 2  # 108 bytes a row: the byte bound first
    assert max(p.num_rows for p in cut) == 1000  # nulls only: the row bound


def test_a_row_over_the_byte_bound_is_a_piece_alone() -> None:
    table = _table(["a", "b" * 10_000, "c", "d"])
    assert [p.num_rows for p in pieces(table, ["c0", "c1"], max_bytes=1000)] == [1, 1, 2]


def test_fixed_width_rows_are_bounded_by_their_size() -> None:
    table = pa.table({"c0": pa.array(range(10_000), pa.int64()), "c1": pa.array([0.5] * 10_000)})
    assert [p.num_rows for p in pieces(table, ["c0", "c1"], max_rows=5000, max_bytes=16_000)] == [1000] * 10


def test_no_rows_no_pieces() -> None:
    assert list(pieces(_table([]), ["c0", "c1"])) == []
