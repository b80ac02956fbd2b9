"""`cdc reconcile --repair`: the drift a reconciliation found, repaired through the stream, then checked.

The reconciler names drifted rows by the canonical text of their key columns (reconciler/canonical.py).
Their typed key values are rebuilt from the source table's schema (the snapshot reader's, which equals
the binlog decoder's), and the keys go to ``repair_through_stream``: each is read again from the
source in one consistent view and sent through the pipeline's normal path, as op ``r`` (the source's
row) or a delete (the source has no such row), so every sink and every Kafka consumer gets the same
correction, marked ``source.snapshot: "repair"``. The repaired tables are then compared again, and
that second result is what the run reports.

A PostgreSQL source takes the same path: the key types come from the catalog as the pgoutput decoder
builds them, and the daemon reads the keys again in its own view (snapshotter/merge.py), so the
corrections carry ``source.connector: "postgresql"`` and the same repair marker.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Sequence
from typing import Protocol

import click

from cdc.config.models import PipelineConfig, PostgresSourceConfig
from cdc.core.errors import ConfigError
from cdc.core.events import ColumnValue, RowImage
from cdc.core.schemas import INTEGER_RANGES, ArrowKind, TableRef, TableSchema
from reconciler.model import RepairPlan
from reconciler.report import Report

__all__ = ["repair_drift", "typed_key"]


def _typed(kind: ArrowKind, text: str) -> ColumnValue:
    if kind in INTEGER_RANGES:
        return int(text)
    if kind is ArrowKind.BOOL:
        return text not in ("0", "false", "f")
    if kind is ArrowKind.DECIMAL:
        return decimal.Decimal(text)
    if kind is ArrowKind.STRING:
        return text
    if kind is ArrowKind.BINARY:
        return bytes.fromhex(text)
    if kind is ArrowKind.DATE:
        return dt.date.fromisoformat(text)
    if kind in (ArrowKind.TIMESTAMP, ArrowKind.TIMESTAMP_UTC):
        moment = dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f")
        return moment.replace(tzinfo=dt.UTC) if kind is ArrowKind.TIMESTAMP_UTC else moment
    if kind is ArrowKind.DURATION:
        return dt.timedelta(microseconds=int(text))
    raise ConfigError(
        f"a key column of kind {kind.value} cannot be repaired by key (its canonical text is lossy)"
    )


def typed_key(schema: TableSchema, key: Sequence[str]) -> RowImage:
    """The key values, as the binlog decoder gives them, of a key in canonical text."""
    by_name = {c.name: c for c in schema.columns}
    kinds = [by_name[name].arrow_type.kind for name in schema.primary_key]
    if len(kinds) != len(key):
        raise ConfigError(f"{schema.ref}: a key of {len(key)} values for {len(kinds)} key columns")
    return tuple(_typed(kind, text) for kind, text in zip(kinds, key, strict=True))


def repair_drift(config: PipelineConfig, report: Report, plan: RepairPlan) -> int:
    """Send ``plan``'s keys through the stream, compare the repaired tables again, and return the exit
    code of that second comparison (0: repaired and matching; 1: drift remains; 2: an error)."""
    from cdc.bootstrap_command import repair_through_stream
    from cdc.reconcile_pipeline import reconcile_pipeline
    from reconciler.report import save_history, summary

    report_code = report.exit_code  # the plan holds what the repair needs; a second comparison follows
    source = config.any_source
    schema_of: _Schemas = (
        _PgSchemas(source) if isinstance(source, PostgresSourceConfig) else _MariaDbSchemas(config)
    )
    keys: dict[TableRef, list[RowImage]] = {}
    try:
        for table_plan in plan.tables:
            schema = schema_of.schema(table_plan.table)
            wanted = keys.setdefault(table_plan.table, [])
            for key in (*table_plan.upsert_keys, *table_plan.delete_keys):
                typed = typed_key(schema, key)
                if typed not in wanted:  # several copies may have drifted on the same key
                    wanted.append(typed)
    finally:
        schema_of.close()
    if not any(keys.values()):
        return report_code
    code = repair_through_stream(config, {t: tuple(k) for t, k in keys.items()})
    if code != 0:
        return code
    tables = tuple(str(t) for t in keys)
    click.echo(f"repaired {sum(len(k) for k in keys.values())} keys; comparing {', '.join(tables)} again")
    again = reconcile_pipeline(config, tables)
    save_history(config.state_dir, again, RepairPlan.of(again.results))
    click.echo(summary(again))
    return again.exit_code


class _Schemas(Protocol):
    def schema(self, ref: TableRef) -> TableSchema: ...

    def close(self) -> None: ...


class _MariaDbSchemas:
    """The snapshot reader's schemas (equal to the binlog decoder's)."""

    def __init__(self, config: PipelineConfig) -> None:
        from cdc.daemon.mariadb_source import connection_settings
        from cdc.sources.mariadb import ZeroDatePolicy
        from snapshotter.reader import SnapshotReader

        source = config.source
        self._reader = SnapshotReader(connection_settings(source), ZeroDatePolicy(source.zero_dates.value))

    def schema(self, ref: TableRef) -> TableSchema:
        return self._reader.table_schema(ref)

    def close(self) -> None:
        self._reader.close()


class _PgSchemas:
    """Schemas built from the catalog as the pgoutput decoder builds them from a Relation message
    (the same function, cdc.sources.postgresql.pgoutput.build_schema): the key values' types are
    those of the events the stream carries."""

    def __init__(self, source: PostgresSourceConfig) -> None:
        from cdc.sources.postgresql.server import connect
        from cdc.sources.postgresql.source_config import pg_settings

        self._conn = connect(pg_settings(source))

    def schema(self, ref: TableRef) -> TableSchema:
        from cdc.sources.postgresql.pgoutput import build_schema
        from cdc.sources.postgresql.server import catalog_columns

        found = self._conn.execute(
            "SELECT c.oid, c.relreplident FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')",
            (ref.db, ref.table),
        ).fetchone()
        if found is None:
            raise ConfigError(f"source table {ref} does not exist any more: nothing to repair it from")
        relid, identity = int(str(found[0])), str(found[1])
        attrs = self._conn.execute(
            "SELECT attname, atttypid, atttypmod FROM pg_attribute WHERE attrelid = %s AND attnum > 0"
            " AND NOT attisdropped ORDER BY attnum",
            (relid,),
        ).fetchall()
        columns = [(0, str(a[0]), int(str(a[1])), int(str(a[2]))) for a in attrs]
        return build_schema(ref, columns, identity, catalog_columns(self._conn, relid))

    def close(self) -> None:
        self._conn.close()
