"""A PostgreSQL batch's binary COPY streams made before its transaction (embedded mode's daemon thread).

:func:`sinks.sql.pg_columnar.write_table` encodes each table's collapsed rows for COPY while the
transaction is open, on the thread that applies the batch: in embedded `cdc run` that is the chain
PostgreSQL waits on, and the encoder's GIL release and take again wait for capture there too.
:func:`encode_ahead` makes the very same streams (the same :func:`rows_binary` over the same rows)
from the batch alone, while the batch before is still being applied: the inserts' stream (COPYed
straight into the table) and the others' (COPYed into the upsert stage); the apply thread then only
sends them. Only for the cases the write takes most: no delete among the rows; updates and inserts
mixed only when the inserts go straight in. Anything else the write encodes itself, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from cdc.core.schemas import ArrowType
from sinks.sql.pg_binary_copy import rows_binary

__all__ = ["CopyAhead", "Stream", "encode_ahead", "stream"]

Stream = list[bytes | memoryview]  # a whole COPY stream (header, rows, trailer), in pieces


@dataclass(frozen=True, slots=True)
class CopyAhead:
    """One table's collapsed rows (none deleted), encoded: ``inserts`` the rows whose last change is
    an insert, ``others`` the rest, each with its row count. When every row is an insert, ``others``
    is empty and ``inserts`` is also the whole rows' stream (what an upsert-only write stages)."""

    inserts: Stream
    inserted: int
    others: Stream
    other_rows: int

    @property
    def every_inserted(self) -> bool:
        return self.other_rows == 0


def stream(rows: pa.Table, types: Sequence[ArrowType]) -> Stream:
    """The COPY stream of ``rows`` (columns as ``types``), in the pieces :func:`rows_binary` yields."""
    return list(rows_binary(rows.columns, types))


def encode_ahead(rows: pa.Table, names: Sequence[str], binary: Sequence[ArrowType]) -> CopyAhead | None:
    """``rows`` (one per key: ``c0``.. the values, ``_op``) as :func:`write_table` sends them; None
    when a row is a delete (the write then encodes as before)."""
    op = rows.column("_op")
    if pc.any(pc.equal(op, "d")).as_py():
        return None
    values = [f"c{i}" for i in range(len(names))]
    inserted = pc.equal(op, "c")
    if pc.all(inserted).as_py():
        return CopyAhead(stream(rows.select(values), binary), rows.num_rows, [], 0)
    fresh = rows.filter(inserted)
    rest = rows.filter(pc.invert(inserted))
    inserts = stream(fresh.select(values), binary) if fresh.num_rows else []
    return CopyAhead(inserts, fresh.num_rows, stream(rest.select(values), binary), rest.num_rows)
