"""State as of a position or a time, rebuilt from a history table.

The rows of a table at ``at`` are, per primary key, the last change at or before ``at`` unless it is a
delete, ignoring everything before the last truncate at or before ``at``. DuckDB ranks the changes
over the Arrow scan (``row_number() over (partition by key order by _position desc)``); the chosen
rows are then taken from the scan itself, so values keep their Iceberg/Arrow types exactly.

A time ``at`` selects changes whose source commit time (``_source_ts``) is at or before it; a naive
datetime is taken as UTC. A table under retention refuses an ``at`` before its horizon (its changes
are gone); after it, the state holds only rows changed since the horizon (see
``sinks.iceberg.retention``).

A keyless table is a multiset: identical rows are normal (MediaWiki's ``user_newtalk``), so its state
counts copies. After the last truncate, every ``c``/``u``/``r`` row adds one copy of its image and
every ``d`` row removes one matching copy; an update of a keyless table is stored as a ``d`` row
(the before image) and a ``u`` row (the after image) at the same ``_position``, so it moves exactly
one copy. Sums do not depend on the order of rows within a position.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from cdc.config.models import IcebergSinkConfig
from cdc.core.errors import ConfigError, PositionFormatError
from cdc.core.positions import Position
from cdc.core.schemas import TableRef
from sinks.iceberg.catalogs import find_history_table, open_catalog
from sinks.iceberg.history_schema import (
    COLUMN_KINDS_PROPERTY,
    META_COLUMNS,
    OP,
    POSITION,
    PRIMARY_KEY_PROPERTY,
    SOURCE_TS,
)
from sinks.iceberg.retention import check_horizon

__all__ = ["History", "history_rows_as_of", "parse_at", "read_history", "rebuild_state", "state_as_of"]

At = Position | dt.datetime


def parse_at(text: str) -> At:
    """A position string (``mdb1:...``) or an ISO time (naive = UTC)."""
    try:
        return Position.parse(text)
    except PositionFormatError:
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--at {text!r} is neither a position (mdb1:...) nor an ISO time") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _table_ref(table: TableRef | str) -> TableRef:
    if isinstance(table, TableRef):
        return table
    db, sep, name = table.partition(".")
    if not sep or not db or not name or "." in name:
        raise ConfigError(f"table {table!r} must be 'db.table'")
    return TableRef(db, name)


def _filter(at: At | None) -> str:
    """A pyiceberg row filter (positions and ISO times hold no quote characters)."""
    if at is None:
        return "true"
    if isinstance(at, Position):
        return f"{POSITION} <= '{at.to_string()}'"
    when = at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)
    return f"{SOURCE_TS} <= '{when.astimezone(dt.UTC).isoformat()}'"


@dataclass(frozen=True, slots=True)
class History:
    """History rows in position order, with what is needed to read them."""

    rows: pa.Table
    primary_key: tuple[str, ...]  # the latest source schema's key; () for a keyless table
    column_kinds: Mapping[str, str]  # column -> ArrowKind value, for :func:`to_source_values`


def read_history(
    catalog: Mapping[str, str],
    namespace: str,
    table: TableRef | str,
    up_to: At | None = None,
    base_dir: Path | None = None,
) -> History:
    """The history rows (at or before ``up_to``) in position order."""
    ref = _table_ref(table)
    identifier, iceberg_table = find_history_table(open_catalog(catalog, base_dir), namespace, ref)
    if iceberg_table is None:
        raise ConfigError(
            f"no Iceberg history for {ref} in namespace {namespace!r} (looked for {identifier})"
        )
    if up_to is not None:  # retention deleted the changes before its horizon: refuse, naming it
        check_horizon(iceberg_table, ref, up_to)
    rows = iceberg_table.scan(row_filter=_filter(up_to)).to_arrow()
    rows = rows.sort_by(POSITION)
    key = tuple(json.loads(iceberg_table.properties.get(PRIMARY_KEY_PROPERTY, "[]")))
    kinds = json.loads(iceberg_table.properties.get(COLUMN_KINDS_PROPERTY, "{}"))
    return History(rows, key, kinds)


def rebuild_state(history: pa.Table, primary_key: tuple[str, ...]) -> pa.Table:
    """The source columns of the rows alive after all of ``history`` (see the module docstring)."""
    columns = [name for name in history.column_names if name not in META_COLUMNS]
    keys = list(primary_key) or columns
    h = pa.table(
        {
            **{f"_k{i}": history.column(k) for i, k in enumerate(keys)},  # only what ranking needs
            "_op": history.column(OP),
            "_position": history.column(POSITION),
            "_row": pa.array(range(history.num_rows), pa.int64()),
        }
    )
    by = ", ".join(f"_k{i}" for i in range(len(keys)))
    if primary_key:
        # per key, the last change wins unless it is a delete
        query = f"""
            with cut as (select coalesce(max(_position), '') as p from h where _op = 't'),
            ranked as (
                select _op, _row,
                       row_number() over (partition by {by} order by _position desc) as _rank
                from h
                where _op <> 't' and _position > (select p from cut)
            )
            select _row from ranked where _rank = 1 and _op <> 'd' order by _row
            """
    else:
        # a multiset: per distinct image, copies added minus copies removed (NULLs group together);
        # each surviving image is taken that many times from its first row
        query = f"""
            with cut as (select coalesce(max(_position), '') as p from h where _op = 't'),
            counted as (
                select min(_row) as _first, sum(case when _op = 'd' then -1 else 1 end)::bigint as _copies
                from h
                where _op <> 't' and _position > (select p from cut)
                group by {by}
            )
            select _first as _row from counted, range(greatest(_copies, 0)) order by _first
            """
    import duckdb  # here: every Iceberg sink imports this module, and only as-of reads need it

    con = duckdb.connect()
    try:
        con.register("h", h)
        picked = con.sql(query).to_arrow_table()
    finally:
        con.close()
    return history.select(columns).take(picked.column("_row"))


def state_as_of(
    catalog: Mapping[str, str],
    namespace: str,
    table: TableRef | str,
    at: At,
    base_dir: Path | None = None,
) -> pa.Table:
    """A table's rows as of a position or a time, rebuilt from its history."""
    history = read_history(catalog, namespace, table, up_to=at, base_dir=base_dir)
    return rebuild_state(history.rows, history.primary_key)


def history_rows_as_of(
    config: IcebergSinkConfig, pipeline: str, table: str, at: str, base_dir: Path | None = None
) -> pa.Table:
    """What ``cdc history -c CONFIG TABLE --at POSITION|TIME`` prints: ``table`` is ``db.table``.

    ``pipeline`` is accepted for symmetry with the other entry points (history tables are named by
    namespace and source table, not by pipeline).
    """
    del pipeline
    return state_as_of(config.catalog, config.namespace, table, parse_at(at), base_dir)
