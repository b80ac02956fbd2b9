"""Open the stores a compare needs: the source table (MariaDB here; PostgreSQL in pg_source.py) and
each copy the config names.

A copy is read as the sink wrote it: a SQL serving table (named by the sink's ``table`` format, in
its ``schema``), or the Iceberg history's state rebuilt as of the position its last snapshot
recorded. Each copy also says where it stands (its applied position), for the lag checks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from cdc.config.models import IcebergSinkConfig, MariaDbSourceConfig, SqlSinkConfig
from cdc.core.errors import ConfigError
from cdc.core.schemas import ArrowKind, TableRef
from reconciler.canonical import Engine, quote
from reconciler.model import CompareColumn
from reconciler.settle import MariaDbSide, SourceSide
from reconciler.stores import DuckDbRunner, SqlRunner, Store
from sinks.contract import AppliedState

__all__ = ["ColumnLookup", "Copy", "SourceTable", "iceberg_copy", "keyed_columns", "open_source", "sql_copy"]

# a source column as compared (with the policy the copies hold it under), or None: excluded by policy
ColumnLookup = Callable[[TableRef, CompareColumn], CompareColumn | None]

_INTS = {
    "tinyint": (ArrowKind.INT8, ArrowKind.UINT8),
    "smallint": (ArrowKind.INT16, ArrowKind.UINT16),
    "mediumint": (ArrowKind.INT32, ArrowKind.UINT32),
    "int": (ArrowKind.INT32, ArrowKind.UINT32),
    "bigint": (ArrowKind.INT64, ArrowKind.UINT64),
}
# character sets whose bytes are UTF-8 as stored (utf8mb3 is "utf8" before MariaDB 10.6)
_UTF8 = {"utf8mb4", "utf8mb3", "utf8"}
_TEXT = {"char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set", "json", "inet4",
         "inet6", "uuid"}  # fmt: skip
_BINARY = {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob", "geometry", "point",
           "linestring", "polygon", "multipoint", "multilinestring", "multipolygon",
           "geometrycollection"}  # fmt: skip
_OTHER = {
    "year": ArrowKind.INT16,
    "float": ArrowKind.FLOAT32,
    "double": ArrowKind.FLOAT64,
    "date": ArrowKind.DATE,
    "datetime": ArrowKind.TIMESTAMP,
    "timestamp": ArrowKind.TIMESTAMP_UTC,
    "time": ArrowKind.DURATION,
    "bit": ArrowKind.UINT64,
}


def _kind(data_type: str, column_type: str) -> ArrowKind:
    t = data_type.lower()
    if t in _INTS:
        signed, unsigned = _INTS[t]
        return unsigned if "unsigned" in column_type.lower() else signed
    if t in _TEXT:
        return ArrowKind.STRING
    if t in _BINARY:
        return ArrowKind.BINARY
    if t in ("decimal", "numeric"):
        return ArrowKind.DECIMAL
    if t in _OTHER:
        return _OTHER[t]
    return ArrowKind.STRING


@dataclass(frozen=True)
class SourceTable:
    ref: TableRef
    runner: SqlRunner
    store: Store
    side: SourceSide  # its positions and consistent snapshots (lag is not drift)


def source_url(config: MariaDbSourceConfig) -> sa.URL:
    return sa.URL.create(
        "mysql+pymysql",
        username=config.user,
        password=config.password.get_secret_value() or None,
        host=config.host,
        port=config.port,
        query={"charset": "utf8mb4"},
    )


class KeylessTable(ConfigError):
    """The source table has no primary key: its rows cannot be paired with a copy's."""


def source_runner(config: MariaDbSourceConfig) -> SqlRunner:
    engine = sa.create_engine(source_url(config), pool_size=4, pool_pre_ping=True)
    return SqlRunner(engine, Engine.MARIADB, utc_session=True)


def open_source(runner: SqlRunner, ref: TableRef, lookup: ColumnLookup | None = None) -> SourceTable:
    """The source table's columns (from information_schema) and primary key; with ``lookup``, the
    columns as the column policies leave them (excluded ones dropped, others with their policy)."""
    rows = runner.query(
        "SELECT column_name, data_type, column_type, numeric_precision, numeric_scale, is_nullable, "
        "character_set_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
        "ORDER BY ordinal_position",
        (ref.db, ref.table),
    )
    if not rows:
        raise ConfigError(f"source table {ref} does not exist (or the source user cannot see it)")
    columns = tuple(
        CompareColumn(
            str(name),
            _kind(str(dt), str(ct)),
            int(scale or 0),
            int(prec or 0),
            str(null) == "YES",
            utf8=str(charset) in _UTF8,
        )
        for name, dt, ct, prec, scale, null, charset in rows
    )
    key_names = [
        str(r[0])
        for r in runner.query(
            "SELECT column_name FROM information_schema.statistics WHERE table_schema = ? AND table_name = ? "
            "AND index_name = 'PRIMARY' ORDER BY seq_in_index",
            (ref.db, ref.table),
        )
    ]
    key, columns = keyed_columns(ref, columns, key_names, lookup)
    table_sql = f"{quote(Engine.MARIADB, ref.db)}.{quote(Engine.MARIADB, ref.table)}"
    return SourceTable(ref, runner, Store(runner, table_sql, key, columns), MariaDbSide(runner))


def keyed_columns(
    ref: TableRef, columns: tuple[CompareColumn, ...], key_names: list[str], lookup: ColumnLookup | None
) -> tuple[tuple[CompareColumn, ...], tuple[CompareColumn, ...]]:
    """A source table's key columns and the columns compared (under the policies, if any); a keyless
    table, or a key column under a policy, is refused by name. Any source engine's."""
    if not key_names:
        raise KeylessTable(
            f"source table {ref} has no primary key: the reconciler compares keyed tables only "
            "(leave it out of the TABLE arguments)"
        )
    key = tuple(next(c for c in columns if c.name == k) for k in key_names)
    if lookup is None:
        return key, columns
    for k in key:
        if lookup(ref, k) != k:
            raise ConfigError(
                f"{ref}.{k.name} is a primary-key column under a column policy: the reconciler "
                "pairs rows by their source key and cannot compare such a table yet (leave "
                f"{ref} out of the TABLE arguments)"
            )
    return key, tuple(c for c in (lookup(ref, c) for c in columns) if c is not None)


def _as_held(column: CompareColumn) -> CompareColumn:
    """A column as a copy holds it: the policy already applied (by the daemon)."""
    if column.policy is None and not column.utf8:
        return column
    return dataclasses.replace(column, policy=None, utf8=False)


@dataclass(frozen=True)
class Copy:
    """One copy of one table: how to read it now, and where it stands."""

    sink: str
    target: str
    store: Callable[[], Store]  # the copy's rows now (Iceberg: the state rebuilt again)
    applied: Callable[[], AppliedState | None]
    columns_not_in_copy: tuple[str, ...]
    close: Callable[[], None]


def sql_copy(name: str, config: SqlSinkConfig, pipeline: str, source: SourceTable) -> Copy:
    from sinks.sql.positions_table import Bookkeeping
    from sinks.sql.type_mapping import Dialect

    url = sa.engine.make_url(str(config.url))
    dialect = Dialect.of(url.get_backend_name())
    engine_kind = {Dialect.POSTGRESQL: Engine.POSTGRESQL, Dialect.MARIADB: Engine.MARIADB,
                   Dialect.SQLITE: Engine.SQLITE}[dialect]  # fmt: skip
    engine = sa.create_engine(url, pool_pre_ping=True)
    runner = SqlRunner(engine, engine_kind, utc_session=engine_kind is Engine.MARIADB)
    ref = source.ref
    target = config.table.format(table=ref.table, db=ref.db)
    schema = config.schema_name
    try:
        held = {c["name"] for c in sa.inspect(engine).get_columns(target, schema=schema)}
    except sa.exc.NoSuchTableError:
        engine.dispose()
        where = f"{schema}.{target}" if schema else target
        raise ConfigError(
            f"sink {name}: the serving table {where} for {ref} does not exist ({url.render_as_string()}); "
            f"has the pipeline run, or should `cdc bootstrap` fill it?"
        ) from None
    src = source.store
    columns = tuple(_as_held(c) for c in src.columns if c.name in held)
    missing = tuple(c.name for c in src.columns if c.name not in held)
    table_sql = (f"{quote(engine_kind, schema)}." if schema else "") + quote(engine_kind, target)
    store = Store(runner, table_sql, src.key, columns)
    book = Bookkeeping(schema)

    def applied() -> AppliedState | None:
        with engine.connect() as conn:
            try:
                return book.read_state(conn, pipeline)
            except (sa.exc.ProgrammingError, sa.exc.OperationalError):
                # no positions table: the table was filled by something else than the pipeline,
                # so where it stands is unknown (differences are then BEHIND, not drift)
                return None
            finally:
                conn.rollback()

    return Copy(name, target, lambda: store, applied, missing, runner.close)


def iceberg_copy(name: str, config: IcebergSinkConfig, source: SourceTable) -> Copy:
    from reconciler.iceberg_state import IcebergStateRunner, local_files
    from sinks.iceberg.as_of import read_history, rebuild_state
    from sinks.iceberg.catalogs import find_history_table, open_catalog
    from sinks.iceberg.retention import check_horizon
    from sinks.iceberg.snapshot_state import stored_state

    ref = source.ref
    catalog = open_catalog(config.catalog)
    identifier, table = find_history_table(catalog, config.namespace, ref)
    if table is None:
        raise ConfigError(
            f"sink {name}: no Iceberg history for {ref} in namespace {config.namespace!r} (looked for "
            f"{identifier}); has the pipeline run?"
        )
    src = source.store
    runners: list[IcebergStateRunner | DuckDbRunner] = []

    def applied() -> AppliedState | None:
        assert table is not None
        table.refresh()
        return stored_state(table)

    def store() -> Store:
        assert table is not None
        state = applied()
        up_to = state.position if state else None
        for old in runners:
            old.close()
        runners.clear()
        files = local_files(table, up_to)
        runner: IcebergStateRunner | DuckDbRunner
        if files is not None:
            if up_to is not None:
                check_horizon(table, ref, up_to)  # retention removed changes before it: refuse
            runner = IcebergStateRunner(files, tuple(c.name for c in src.key), up_to)
            held = {f.name for f in table.schema().fields}
        else:
            history = read_history(config.catalog, config.namespace, ref, up_to=up_to)
            rows = rebuild_state(history.rows, history.primary_key)
            runner = DuckDbRunner(rows)
            held = set(rows.column_names)
        runners.append(runner)
        columns = tuple(_as_held(c) for c in src.columns if c.name in held)
        return Store(runner, "t", src.key, columns)

    missing = tuple(c.name for c in src.columns if c.name not in {f.name for f in table.schema().fields})

    def close() -> None:
        for r in runners:
            r.close()

    return Copy(name, identifier, store, applied, missing, close)
