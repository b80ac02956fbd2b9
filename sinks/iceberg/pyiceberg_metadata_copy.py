"""A copy pyiceberg 0.12 makes and nothing needs: the deep copy that ends ``update_table_metadata``.

Every commit builds the table's new metadata with ``update_table_metadata`` (the catalog's
``_update_and_stage_table``, and ``Transaction.table_metadata`` through
:mod:`sinks.iceberg.pyiceberg_speed`), which ends in ``model_copy(deep=True)``: a copy of every
snapshot, schema, spec and summary the table holds, ~6,000 Python objects for a fresh history table
and growing with its snapshot list (the history keeps up to ``max_snapshots``). Here it ends in a
shallow ``model_copy()`` instead; the rest is pyiceberg's function unchanged.

Exact: the updates never change a container of the metadata they start from (each builds a new
list or dict for the field it changes), TableMetadata and its parts are frozen pydantic models,
and neither pyiceberg nor Headwater changes a metadata container in place (the one place pyiceberg
does, the ``construct_refs`` validator, runs on freshly parsed metadata only). The new metadata
shares the unchanged parts with the one it was built from, as pyiceberg_speed's cache already
shares one metadata object between reads. A pyiceberg whose function differs is left as it is.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import pyiceberg.catalog as pyiceberg_catalog
from pyiceberg.table import update as pyiceberg_update
from pyiceberg.table.metadata import TableMetadata, TableMetadataUtil
from pyiceberg.table.update import TableUpdate
from pyiceberg.utils.datetime import datetime_to_millis

__all__ = ["install", "new_metadata", "uninstall", "update_table_metadata"]

log = logging.getLogger(__name__)

_ORIGINAL: Any = pyiceberg_update.update_table_metadata
# the names pyiceberg 0.12.0's function uses (the body below is a copy of it), and its deep copy
_EXPECTED_NAMES = (
    "TableMetadataUtil",
    "_TableMetadataUpdateContext",
    "_apply_table_update",
    "_update_table_metadata_log",
    "astimezone",
    "check_compatible",
    "datetime",
    "datetime_to_millis",
    "has_changes",
    "last_updated_ms",
    "model_copy",
    "model_dump",
    "now",
    "parse_obj",
    "schema",
    "sort_order",
    "spec",
)
_installed = False


def update_table_metadata(
    base_metadata: TableMetadata,
    updates: tuple[TableUpdate, ...],
    enforce_validation: bool = False,
    metadata_location: str | None = None,
) -> TableMetadata:
    """pyiceberg 0.12's ``update_table_metadata``, ending in a shallow copy (see the module doc)."""
    context = pyiceberg_update._TableMetadataUpdateContext()
    new_metadata = base_metadata
    for update in updates:
        new_metadata = pyiceberg_update._apply_table_update(update, new_metadata, context)
    if context.has_changes():
        if metadata_location:
            new_metadata = pyiceberg_update._update_table_metadata_log(
                new_metadata, metadata_location, base_metadata.last_updated_ms
            )
        if base_metadata.last_updated_ms == new_metadata.last_updated_ms:
            now = datetime_to_millis(datetime.now().astimezone())
            new_metadata = new_metadata.model_copy(update={"last_updated_ms": now})
    new_metadata.spec().check_compatible(new_metadata.schema())
    new_metadata.sort_order().check_compatible(new_metadata.schema())
    if enforce_validation:
        return TableMetadataUtil.parse_obj(new_metadata.model_dump())
    return new_metadata.model_copy()


def new_metadata(base_metadata: TableMetadata, updates: tuple[TableUpdate, ...]) -> TableMetadata:
    """``base_metadata`` with ``updates`` applied: the shallow way once installed, else pyiceberg's."""
    build = update_table_metadata if _installed else _ORIGINAL
    return build(base_metadata, updates)


def _known(function: Any) -> bool:
    code = getattr(function, "__code__", None)
    return (
        code is not None and tuple(sorted(code.co_names)) == _EXPECTED_NAMES and ("deep",) in code.co_consts
    )


def install() -> bool:
    """Use :func:`update_table_metadata` where pyiceberg's catalogs call it; False (and nothing
    changed) when pyiceberg's function is not the one this was written for."""
    global _installed
    current = pyiceberg_catalog.__dict__.get("update_table_metadata")
    if current is update_table_metadata:
        return True
    if current is not _ORIGINAL or not _known(_ORIGINAL):
        log.warning("pyiceberg's update_table_metadata is not the one this shortcut was written for")
        return False
    setattr(pyiceberg_catalog, "update_table_metadata", update_table_metadata)  # noqa: B010 - not exported
    _installed = True
    return True


def uninstall() -> None:
    """pyiceberg's own function back (benchmarks compare the two)."""
    global _installed
    if _installed:
        setattr(pyiceberg_catalog, "update_table_metadata", _ORIGINAL)  # noqa: B010 - not exported
        _installed = False
