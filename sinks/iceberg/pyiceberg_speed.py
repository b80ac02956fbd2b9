"""A cache pyiceberg 0.12 lacks: ``Transaction.table_metadata`` between two reads of one state.

pyiceberg's ``Transaction.table_metadata`` replays the staged updates onto the table's metadata,
ending in a deep copy (pydantic ``model_copy(deep=True)``), on EVERY read; one append reads it about
20 times. The copy's cost grows with the table's snapshot list, and a history table keeps every
snapshot (one per commit), so each commit got slower as the history grew. Measured
(benchmarks/iceberg_commit_bench.py, a local SQL catalog, 1000-row appends): see
``benchmarks/results/latest.md``. Upstream: apache/iceberg-python#3302 (approved, closed as stale)
and #3784 (closed) make the same cache; #2674 and #3301 hoisted some reads. Remove this module once
a pyiceberg release caches the property.

The cache is exact: a read returns the object an earlier read built from the very same base metadata
object and the very same tuple of staged updates (``_stage`` builds a new tuple on every change, and
a commit replaces the table's metadata object). TableMetadata models are frozen, so sharing one is
safe.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from typing import Any

from pyiceberg.table import Transaction
from pyiceberg.table.metadata import TableMetadata

from sinks.iceberg.pyiceberg_metadata_copy import new_metadata

__all__ = ["install", "warm_up"]

log = logging.getLogger(__name__)

_ORIGINAL = Transaction.__dict__.get("table_metadata")
# imported by pyiceberg on a process's first append, not before: rich (the schema compatibility check
# builds a console on every append). Not pyiceberg_core (pyiceberg's day transform, 9.5 MiB of RSS):
# the history's day partition is computed without it (pyiceberg_partitions.py)
_FIRST_APPEND_IMPORTS = ("rich.console", "rich.table")


def _cached_table_metadata(self: Transaction) -> TableMetadata:
    base = self._table.metadata
    updates = self._updates
    held: Any = self.__dict__.get("_headwater_metadata")
    if held is not None and held[0] is base and held[1] is updates:
        return held[2]  # type: ignore[no-any-return]
    metadata = new_metadata(base, updates)  # pyiceberg's, without its deep copy once installed
    self.__dict__["_headwater_metadata"] = (base, updates, metadata)
    return metadata


def install() -> None:
    """Put the cache in place (once); a pyiceberg whose Transaction differs is left as it is."""
    current = Transaction.__dict__.get("table_metadata")
    if not isinstance(current, property) or current.fget is _cached_table_metadata:
        return
    if _ORIGINAL is None or current is not _ORIGINAL:
        log.warning("pyiceberg's Transaction.table_metadata is not the one this cache was written for")
        return
    Transaction.table_metadata = property(_cached_table_metadata)  # type: ignore[method-assign,assignment]


def warm_up() -> None:
    """Import now what pyiceberg would import during the first commit (27-29 ms of CPU measured, a
    first append 48-50 ms instead of 22): the sink calls it in ``open()``, before changes flow."""
    for name in _FIRST_APPEND_IMPORTS:
        with contextlib.suppress(ImportError):  # another pyiceberg may not use it
            importlib.import_module(name)
