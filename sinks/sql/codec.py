"""Per (target table, source schema version): which values go to which target column, checked and encoded.

A version's columns map onto the target through the table's shape (renamed columns to their new
names, dropped columns nowhere), so rows of any version the table followed land in the right place.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cdc.core.events import RowImage
from cdc.core.schemas import TableSchema
from sinks.sql.positions_table import TableShape
from sinks.sql.type_mapping import Dialect, checker, encoder, target_type

__all__ = ["Codec", "make_codec"]

Check = Callable[[Any], str | None]


@dataclass(frozen=True, slots=True)
class Codec:
    names: tuple[str, ...]  # target column of each value written (kept source columns, in order)
    key_names: tuple[str, ...]  # the version's key columns (source names, for error messages)
    key_of: Callable[[RowImage], RowImage]
    project: Callable[[RowImage], Sequence[Any]]  # the kept values of a source image
    checks: tuple[tuple[int, str, Check], ...]  # (index in the source image, source column, check)
    key_checks: tuple[tuple[int, Check], ...]  # (index in the key, check)
    encoders: tuple[Callable[[Any], Any] | None, ...] | None  # per kept value; None: bind as they are

    def row(self, image: RowImage) -> Sequence[Any]:
        values = self.project(image)
        encoders = self.encoders
        if encoders is None:
            return values
        return [v if e is None or v is None else e(v) for v, e in zip(values, encoders, strict=True)]


def _getter(idx: tuple[int, ...]) -> Callable[[RowImage], RowImage]:
    if len(idx) == 1:
        (i,) = idx
        return lambda image: (image[i],)
    getter = operator.itemgetter(*idx)
    return lambda image: tuple(getter(image))


def make_codec(shape: TableShape, schema: TableSchema, dialect: Dialect) -> Codec:
    """``schema`` carries the key the target uses (the source's, or ``key_columns``)."""
    mapping = shape.mapping(schema.version)
    if mapping is None:  # a table recorded by an older release: columns map by name
        known = {c.name for c in shape.columns}
        mapping = tuple(c.name if c.name in known else None for c in schema.columns)
    kept = tuple(i for i, name in enumerate(mapping) if name is not None)
    names = tuple(name for name in mapping if name is not None)
    columns = schema.columns
    checks = tuple(
        (i, columns[i].name, check)
        for i in kept
        if (check := checker(target_type(columns[i]), dialect)) is not None
    )
    key_idx = schema.key_indexes()
    key_checks = tuple((key_idx.index(i), check) for i, _, check in checks if i in key_idx)
    encoders = tuple(encoder(columns[i].arrow_type, dialect) for i in kept)
    project: Callable[[RowImage], Sequence[Any]] = (
        (lambda image: image) if len(kept) == len(columns) else _getter(kept)
    )
    return Codec(
        names,
        schema.primary_key,
        _getter(key_idx),
        project,
        checks,
        key_checks,
        encoders if any(e is not None for e in encoders) else None,
    )
