"""Retention of the Iceberg history: changes older than a table's period deleted, and gone from storage.

A table's period is ``history_retention_days`` in the pipeline's ``catalog:`` metadata (the caller
resolves it per source table and passes a :data:`RetentionOf`). One run, per history table:

1. **Delete.** Rows whose ``_source_ts`` (the source commit time) is before ``now - period`` are
   deleted with pyiceberg's copy-on-write delete: days wholly before the horizon lose their files,
   the day across it is rewritten without the expired rows. The snapshots carry the table's
   ``headwater.*`` state forward (as compaction does), so the sink's stored position, the progress
   table and ``applied()`` are unchanged: nothing is applied twice after a restart, nothing skipped.
   The table properties record the horizon (time, and the newest position deleted) in the same
   commit, for :func:`check_horizon`.
2. **Seal.** The delete's snapshots keep manifests listing the deleted files as DELETED entries,
   with their column bounds (the first 16 characters of the smallest and largest values): raw
   values of expired rows, in live metadata. An empty append (pyiceberg's fast append leaves
   manifests without added or existing files behind) makes a snapshot whose manifests name only
   live files; it carries the state and the ``headwater.retention`` marker.
3. **Expire and remove.** Every snapshot older than the seal is expired (time travel to before a
   retention run is gone, by design), and the files only they reached are deleted from storage:
   pyiceberg 0.12 expires snapshots in the metadata only (apache/iceberg-python#2604; orphan-file
   removal, #1958, is not released). See :func:`expire_removing_files`.
4. **Orphans.** Data and manifest files (Parquet, Avro, ORC) under the table's ``data/`` and
   ``metadata/`` folders that no live snapshot references (left by failed commits, by earlier
   expiry) and that are older than ``orphan_min_age`` are deleted too: a younger unreferenced file
   may belong to a commit in flight.

Metadata JSON files (``*.metadata.json``) are not removed here: they hold snapshot lists, schemas
and properties, no row values. pyiceberg itself keeps only the newest 100 after each commit of a
history or progress table (``history_schema.METADATA_FILES_PROPERTIES``).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pyarrow.compute as pc
from pyarrow.fs import FileSelector, FileType
from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.manifest import ManifestEntryStatus, ManifestFile
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot

from cdc.config.models import IcebergSinkConfig
from cdc.core.errors import ConfigError
from cdc.core.positions import Position
from cdc.core.schemas import TableRef
from sinks.iceberg.catalogs import find_history_table, open_catalog
from sinks.iceberg.history_schema import POSITION, SOURCE_PROPERTY, SOURCE_TS, arrow_schema_of
from sinks.iceberg.snapshot_state import PIPELINE_KEY, state_properties, stored_state

__all__ = [
    "HORIZON_POSITION_PROPERTY",
    "HORIZON_PROPERTY",
    "ORPHAN_MIN_AGE",
    "RETENTION_KEY",
    "RemovedFiles",
    "RetentionOf",
    "RetentionResult",
    "apply_retention",
    "check_horizon",
    "expire_removing_files",
    "horizon_of",
    "source_of",
]

log = logging.getLogger(__name__)

HORIZON_PROPERTY = "headwater.retention-horizon"  # ISO time: changes before it were deleted
HORIZON_POSITION_PROPERTY = "headwater.retention-position"  # the newest position deleted
RETENTION_KEY = "headwater.retention"  # in a seal snapshot's summary: the horizon it sealed
DELETE_KEY = "headwater.retention-delete"  # in a retention delete's snapshots: the horizon
_REMOVABLE = (".parquet", ".avro", ".orc")
# Java Iceberg's remove-orphan-files default is 3 days; a day is far longer than any commit takes
ORPHAN_MIN_AGE = dt.timedelta(days=1)

_T = TypeVar("_T")

RetentionOf = Callable[[TableRef], dt.timedelta | None]
"""A source table's retention period, or None to keep its history for ever."""


@dataclass(frozen=True, slots=True)
class RetentionResult:
    horizon: dt.datetime
    rows_deleted: int
    snapshots_expired: int
    files_removed: int  # data, manifest and manifest-list files deleted from storage
    data_files_removed: int
    bytes_removed: int


@dataclass(frozen=True, slots=True)
class RemovedFiles:
    files: int
    data_files: int
    bytes: int


def source_of(table: Table) -> TableRef | None:
    """The source table a history table holds (None for the progress table and foreign tables)."""
    source = table.properties.get(SOURCE_PROPERTY)
    if source is None or table.schema().find_field(SOURCE_TS, case_sensitive=True) is None:
        return None
    db, _, name = source.partition(".")
    return TableRef(db, name)


def apply_retention(
    table: Table,
    identifier: str,
    pipeline: str,
    keep: dt.timedelta,
    now: dt.datetime,
    orphan_min_age: dt.timedelta = ORPHAN_MIN_AGE,
) -> RetentionResult:
    """Delete ``table``'s changes older than ``now - keep`` and remove their files (module docstring)."""
    horizon = (now - keep).astimezone(dt.UTC)
    where = f"{SOURCE_TS} < '{horizon.isoformat()}'"
    expired_rows, newest = _expired(table, where)
    state = stored_state(table)
    properties = state_properties(pipeline, state) if state is not None else {PIPELINE_KEY: pipeline}
    known = _horizon(table)
    recorded = horizon if known is None else max(horizon, known)  # a longer period deletes nothing back
    if expired_rows:
        previous = table.properties.get(HORIZON_POSITION_PROPERTY)
        with table.transaction() as txn:
            txn.delete(where, snapshot_properties={**properties, DELETE_KEY: horizon.isoformat()})
            txn.set_properties(
                {
                    HORIZON_PROPERTY: recorded.isoformat(),
                    HORIZON_POSITION_PROPERTY: max(newest or "", previous or ""),
                }
            )
        table.refresh()
    elif recorded != known:
        # nothing older yet: readers are told from when on the history is kept all the same
        table.transaction().set_properties({HORIZON_PROPERTY: recorded.isoformat()}).commit_transaction()
        table.refresh()
    expired_snapshots = 0
    removed = RemovedFiles(0, 0, 0)
    if _unsealed(table):
        with table.transaction() as txn:
            empty = arrow_schema_of(table.schema()).empty_table()
            txn.append(empty, snapshot_properties={**properties, RETENTION_KEY: horizon.isoformat()})
        table.refresh()
    seal = _last_seal(table)
    if seal is not None:
        keep_ids = _chain_to(table, seal)
        # a branch head or tag cannot be expired (pyiceberg refuses): it keeps what it references
        refs = {name: ref.snapshot_id for name, ref in table.metadata.refs.items() if name != "main"}
        held = sorted(name for name, ref_id in refs.items() if ref_id not in keep_ids)
        if held:
            log.warning(
                "iceberg retention: %s: branches or tags %s still reference snapshots from before the "
                "horizon; their expired rows stay on storage until they are removed",
                identifier,
                ", ".join(held),
            )
        ids = [
            s.snapshot_id
            for s in table.metadata.snapshots
            if s.snapshot_id not in keep_ids and s.snapshot_id not in refs.values()
        ]
        removed = expire_removing_files(table, ids)
        expired_snapshots = len(ids)
    orphans = _remove_orphans(table, now, orphan_min_age)
    result = RetentionResult(
        horizon=horizon,
        rows_deleted=expired_rows,
        snapshots_expired=expired_snapshots,
        files_removed=removed.files + orphans.files,
        data_files_removed=removed.data_files + orphans.data_files,
        bytes_removed=removed.bytes + orphans.bytes,
    )
    log.info(
        "iceberg retention: %s: %d rows older than %s deleted; %d files removed from storage "
        "(%d data files, %d bytes, %d of them orphans), %d snapshots expired",
        identifier,
        result.rows_deleted,
        horizon.isoformat(),
        result.files_removed,
        result.data_files_removed,
        result.bytes_removed,
        orphans.files,
        result.snapshots_expired,
    )
    return result


def _expired(table: Table, where: str) -> tuple[int, str | None]:
    """How many rows ``where`` matches and the newest position among them (read batch by batch)."""
    rows = 0
    newest: str | None = None
    for batch in table.scan(row_filter=where, selected_fields=(POSITION,)).to_arrow_batch_reader():
        if batch.num_rows:
            rows += batch.num_rows
            top = pc.max(batch.column(0)).as_py()
            newest = top if newest is None or top > newest else newest
    return rows, newest


def _horizon(table: Table) -> dt.datetime | None:
    text = table.properties.get(HORIZON_PROPERTY)
    return dt.datetime.fromisoformat(text) if text else None


def _ancestors(table: Table) -> Iterable[Snapshot]:
    snapshot = table.current_snapshot()
    while snapshot is not None:
        yield snapshot
        parent = snapshot.parent_snapshot_id
        snapshot = table.snapshot_by_id(parent) if parent is not None else None


def _last_seal(table: Table) -> Snapshot | None:
    for snapshot in _ancestors(table):
        if snapshot.summary is not None and snapshot.summary[RETENTION_KEY]:
            return snapshot
    return None


def _unsealed(table: Table) -> bool:
    """Whether a retention delete since the last seal still has its DELETED manifest entries live."""
    for snapshot in _ancestors(table):
        summary = snapshot.summary
        if summary is not None and summary[RETENTION_KEY]:
            return False
        if summary is not None and summary[DELETE_KEY]:
            return True
    return False


def _chain_to(table: Table, seal: Snapshot) -> set[int]:
    ids: set[int] = set()
    for snapshot in _ancestors(table):
        ids.add(snapshot.snapshot_id)
        if snapshot.snapshot_id == seal.snapshot_id:
            break
    return ids


class _ManifestReads:
    """What manifest lists and manifests hold, read once per process: Iceberg never rewrites either
    file (a commit writes new ones under new names), so a path read once is known for good.

    The sink's snapshot cap (``sinks.iceberg.snapshot_bound``) expires every few commits; without
    this, each expiry re-read every live snapshot's manifest list and manifests (~9 ms each in
    pyiceberg's Avro reader): 0.87 s of CPU per expiry at 100 snapshots. Bounded (least recently
    used go first).
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._lists: OrderedDict[str, tuple[ManifestFile, ...]] = OrderedDict()
        self._entries: OrderedDict[str, tuple[frozenset[str], frozenset[str]]] = OrderedDict()

    def manifests(self, table: Table, snapshot: Snapshot) -> tuple[ManifestFile, ...]:
        found = self._get(self._lists, snapshot.manifest_list)
        if found is None:
            found = tuple(snapshot.manifests(table.io))
            self._put(self._lists, snapshot.manifest_list, found)
        return found

    def data_files(self, table: Table, manifest: ManifestFile) -> tuple[frozenset[str], frozenset[str]]:
        """(every data file the manifest names, those of its live entries: added or existing)."""
        found = self._get(self._entries, manifest.manifest_path)
        if found is None:
            every: set[str] = set()
            live: set[str] = set()
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=False):
                every.add(entry.data_file.file_path)
                if entry.status is not ManifestEntryStatus.DELETED:
                    live.add(entry.data_file.file_path)
            found = (frozenset(every), frozenset(live))
            self._put(self._entries, manifest.manifest_path, found)
        return found

    def _get(self, cache: OrderedDict[str, _T], key: str) -> _T | None:
        with self._lock:
            found = cache.get(key)
            if found is not None:
                cache.move_to_end(key)
            return found

    def _put(self, cache: OrderedDict[str, _T], key: str, value: _T) -> None:
        with self._lock:
            cache[key] = value
            while len(cache) > self._size:
                cache.popitem(last=False)


_READS = _ManifestReads(size=4096)


def _reachable(table: Table, snapshots: Iterable[Snapshot], live_only: bool) -> tuple[set[str], set[str]]:
    """(metadata files, data files) the snapshots reach; ``live_only``: data files of live entries only."""
    metadata: set[str] = set()
    data: set[str] = set()
    for snapshot in snapshots:
        metadata.add(snapshot.manifest_list)
        for manifest in _READS.manifests(table, snapshot):
            # each snapshot lists the manifests of every earlier append: reading one per snapshot was
            # quadratic (200 snapshots, 22 s). A manifest never changes: once is exact
            if manifest.manifest_path in metadata:
                continue
            metadata.add(manifest.manifest_path)
            every, live = _READS.data_files(table, manifest)
            data |= live if live_only else every
    return metadata, data


def expire_removing_files(table: Table, snapshot_ids: list[int]) -> RemovedFiles:
    """Expire ``snapshot_ids`` and delete from storage the files that only they reached.

    Only files no remaining snapshot references are deleted (data files of live manifest entries,
    manifests, manifest lists of every snapshot left, read after the expiry committed; of their one
    root when there is one, see :func:`_only_root`), as Java Iceberg's ExpireSnapshots does; a file
    still referenced stays whatever the expired snapshots said about it. The current snapshot and
    branch or tag heads cannot be expired (pyiceberg refuses).
    """
    if not snapshot_ids:
        return RemovedFiles(0, 0, 0)
    wanted = set(snapshot_ids)
    before = list(table.metadata.snapshots)
    going = [s for s in before if s.snapshot_id in wanted]
    old_metadata, old_data = _reachable(table, going, live_only=False)
    table.maintenance.expire_snapshots().by_ids(snapshot_ids).commit()
    table.refresh()
    root = _only_root(table.metadata.snapshots, before, wanted)
    kept = [root] if root is not None else table.metadata.snapshots
    live_metadata, live_data = _reachable(table, kept, live_only=True)
    live = live_metadata | live_data | _statistics_files(table)
    files = data_files = size = 0
    for path in sorted((old_metadata | old_data) - live):
        gone = _delete(table, path)
        if gone is None:
            continue
        files += 1
        size += gone
        data_files += path in old_data
    return RemovedFiles(files, data_files, size)


def _only_root(kept: list[Snapshot], before: list[Snapshot], going: set[int]) -> Snapshot | None:
    """The one snapshot every kept snapshot descends from, when no expired one descends from it.

    Then a file (data file or manifest) an expired snapshot reached is live in some kept snapshot
    only if it is live in that root: a kept snapshot's files are its parent's, less what it removed,
    plus files it wrote under new names (as Java Iceberg's incremental cleanup reasons, for a
    history without cherry-picks). So only the root is read, not every kept snapshot: the sink's
    cap expires every few commits, and reading each new manifest list and manifest (~6 ms each in
    pyiceberg's Avro reader) was most of its cost. None: read them all.
    """
    ids = {s.snapshot_id for s in kept}
    roots = [s for s in kept if s.parent_snapshot_id is None or s.parent_snapshot_id not in ids]
    if len(roots) != 1:
        return None
    children: dict[int, list[int]] = {}
    for snapshot in before:
        if snapshot.parent_snapshot_id is not None:
            children.setdefault(snapshot.parent_snapshot_id, []).append(snapshot.snapshot_id)
    below = list(children.get(roots[0].snapshot_id, ()))
    while below:  # an expired descendant of the root (a rolled-back commit) may share newer files
        child = below.pop()
        if child in going:
            return None
        below.extend(children.get(child, ()))
    return roots[0]


def _statistics_files(table: Table) -> set[str]:
    return {s.statistics_path for s in table.metadata.statistics} | {
        s.statistics_path for s in table.metadata.partition_statistics
    }


def _delete(table: Table, path: str) -> int | None:
    """Delete ``path``; its size, or None when it was gone already (a run interrupted after it)."""
    try:
        size = len(table.io.new_input(path))
        table.io.delete(path)
    except FileNotFoundError:
        return None
    return size


def _remove_orphans(table: Table, now: dt.datetime, min_age: dt.timedelta) -> RemovedFiles:
    """Delete unreferenced data and manifest files under the table's location older than ``min_age``."""
    io = table.io
    if not isinstance(io, PyArrowFileIO):
        log.warning("iceberg retention: cannot list files through %s; orphan files not removed", type(io))
        return RemovedFiles(0, 0, 0)
    scheme, netloc, root = io.parse_location(table.location())
    fs = io.fs_by_scheme(scheme, netloc)
    live_metadata, live_data = _reachable(table, table.metadata.snapshots, live_only=True)
    live = {_path_of(io, p) for p in live_metadata | live_data | _statistics_files(table)}
    cutoff = now - min_age
    files = data_files = size = 0
    for folder in ("data", "metadata"):
        selector = FileSelector(f"{root.rstrip('/')}/{folder}", recursive=True, allow_not_found=True)
        for info in fs.get_file_info(selector):
            # data and manifest files only: what can hold row values or their bounds (metadata JSON
            # and a catalog's own files, such as a version hint, are left alone)
            if info.type is not FileType.File or info.path in live or not info.path.endswith(_REMOVABLE):
                continue
            mtime = info.mtime
            if mtime is None or (mtime if mtime.tzinfo else mtime.replace(tzinfo=dt.UTC)) > cutoff:
                continue  # perhaps a commit in flight: a later run removes it once it is old enough
            fs.delete_file(info.path)
            files += 1
            size += info.size or 0
            data_files += folder == "data"
    return RemovedFiles(files, data_files, size)


def _path_of(io: PyArrowFileIO, location: str) -> str:
    return io.parse_location(location)[2]


def check_horizon(table: Table, source: TableRef, at: Position | dt.datetime) -> None:
    """Refuse a state-as-of read at ``at`` when retention deleted changes at or after it."""
    horizon = _horizon(table)
    if horizon is None:
        return
    newest = table.properties.get(HORIZON_POSITION_PROPERTY)
    if isinstance(at, Position):
        before = newest is not None and at.to_string() <= newest
        asked = f"position {at.to_string()}"
    else:
        when = at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)  # naive: UTC, as as-of reads
        before = when < horizon
        asked = when.isoformat()
    if before:
        raise ConfigError(
            f"{source}: {asked} is before the retention horizon {horizon.isoformat()} "
            f"(history_retention_days): changes older than it were deleted from the Iceberg history; "
            f"ask for a time at or after {horizon.isoformat()}"
        )


def horizon_of(config: IcebergSinkConfig, table: str, base_dir: Path | None = None) -> dt.datetime | None:
    """The retention horizon of ``table``'s (db.table) history; None: retention never ran on it."""
    db, _, name = table.partition(".")
    _identifier, found = find_history_table(
        open_catalog(config.catalog, base_dir), config.namespace, TableRef(db, name)
    )
    return None if found is None else _horizon(found)
