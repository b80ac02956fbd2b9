"""A table altered while a chunk is read: the chunk is read again in a fresh view (or, in one view,
SchemaChangedDuringRead), never handed out with rows of one shape under the schema of another."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cdc.core.errors import TransientError
from cdc.core.schemas import TableRef
from cdc.sources.mariadb import ConnectionSettings, ZeroDatePolicy
from snapshotter.keyset import ChunkSql
from snapshotter.reader import SchemaChangedDuringRead, SnapshotReader

Sql = Callable[..., list[tuple[object, ...]]]


class AlterFirst(SnapshotReader):
    """Runs DDL from another connection after the view starts and before the rows are read."""

    def __init__(self, settings: ConnectionSettings, ddl: Callable[[], object], *, one_view: bool) -> None:
        super().__init__(settings, ZeroDatePolicy.NULL, one_view=one_view)
        self.ddl: Callable[[], object] | None = ddl

    def _fetch(self, compiled: Any, q: ChunkSql) -> Any:
        if self.ddl is not None:
            ddl, self.ddl = self.ddl, None
            ddl()
        return super()._fetch(compiled, q)


@pytest.mark.parametrize("algorithm", ["INSTANT", "COPY"])
def test_ddl_during_a_chunk_rereads_it_in_the_new_shape(
    settings: ConnectionSettings, sql: Sql, database: str, algorithm: str
) -> None:
    ref = TableRef(database, f"ddl_{algorithm.lower()}")
    sql(f"CREATE TABLE {ref} (id INT PRIMARY KEY, v INT)", f"INSERT INTO {ref} VALUES (1, 10), (2, 20)")
    reader = AlterFirst(
        settings,
        lambda: sql(f"ALTER TABLE {ref} ADD COLUMN w INT DEFAULT 7, ALGORITHM={algorithm}"),
        one_view=False,
    )
    try:
        chunk = reader.read_chunk(ref, None, 10)
    finally:
        reader.close()
    assert chunk.schema.column_names == ("id", "v", "w")
    assert chunk.rows == ((1, 10, 7), (2, 20, 7))
    assert chunk.schema == SnapshotReader(settings, ZeroDatePolicy.NULL).table_schema(ref)


def test_ddl_inside_one_view_is_transient_and_names_the_table(
    settings: ConnectionSettings, sql: Sql, database: str
) -> None:
    ref = TableRef(database, "ddl_view")
    sql(f"CREATE TABLE {ref} (id INT PRIMARY KEY, v INT)", f"INSERT INTO {ref} VALUES (1, 10)")
    reader = AlterFirst(settings, lambda: sql(f"ALTER TABLE {ref} ADD COLUMN w INT"), one_view=True)
    try:
        with pytest.raises(SchemaChangedDuringRead, match=str(ref)) as raised:
            reader.read_chunk(ref, None, 10)
        assert isinstance(raised.value, TransientError)
        reader.release_view()
        assert reader.read_chunk(ref, None, 10).rows == ((1, 10, None),)
    finally:
        reader.close()
