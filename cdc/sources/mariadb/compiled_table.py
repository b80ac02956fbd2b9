"""A compiled TABLE_MAP: what the stream decoder keeps per table id (split from stream_decoder.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter

from cdc.core.events import RowImage
from cdc.core.schemas import TableSchema
from cdc.sources.mariadb.binlog_format import FieldType
from cdc.sources.mariadb.row_decoder import RowsDecoder
from cdc.sources.mariadb.table_map import TableMap

__all__ = ["CompiledTable", "KeyOf", "key_getter", "needs_extended_lookup"]

KeyOf = Callable[[RowImage], RowImage | None]


@dataclass(frozen=True, slots=True)
class CompiledTable:
    """A compiled TABLE_MAP: its decoders, schema and key extractor (None when filtered out)."""

    decoder: RowsDecoder | None
    schema: TableSchema  # for a filtered-out table, an empty one that nothing reads
    key_of: KeyOf


def key_getter(indexes: tuple[int, ...]) -> KeyOf:
    if not indexes:
        return lambda row: None
    if len(indexes) == 1:
        (k,) = indexes

        def single(row: RowImage) -> RowImage:
            return (row[k],)

        return single
    many = itemgetter(*indexes)

    def compound(row: RowImage) -> RowImage:
        return tuple(many(row))

    return compound


def needs_extended_lookup(tm: TableMap) -> bool:
    # UUID/INET6 are BINARY(16), INET4 is BINARY(4) in the binlog: only these need the dictionary.
    return any(
        c.type_code == FieldType.STRING and c.collation == 63 and c.meta in (4, 16) for c in tm.columns
    )
