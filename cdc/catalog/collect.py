"""Gather one pipeline's catalog entries from what it keeps: status, schema versions, sinks, reports.

Read-only and tolerant: whatever cannot be read (a source down, a sink's database gone) becomes a
problem line or an unknown value, and the rest is still shown.
"""

from __future__ import annotations

import datetime as dt
import logging

import pymysql

from cdc.catalog.metadata import table_product
from cdc.catalog.model import CatalogEntry, CopyView, PipelineView
from cdc.catalog.schema_history import TableVersions, read_versions
from cdc.config.models import (
    IcebergSinkConfig,
    PipelineConfig,
    PostgresSourceConfig,
    SqlSinkConfig,
    mask_url_password,
)
from cdc.core.errors import HeadwaterError
from cdc.core.schemas import TableRef
from cdc.core.table_filter import TableFilter
from cdc.daemon.status import PipelineStatus, SinkStatus, pipeline_status

__all__ = ["collect_pipeline"]

log = logging.getLogger(__name__)


def collect_pipeline(config: PipelineConfig) -> PipelineView:
    status = pipeline_status(config)
    problems: list[str] = []
    if status.source_error:
        problems.append(f"source: {status.source_error}")
    versions, error = read_versions(config)
    if error:
        problems.append(f"schema versions: {error}")
    # tables the source captures now, and any the pipeline has versions of (dropped since, or source down)
    names = sorted(set(status.tables) | set(versions))
    refs = [TableRef(*name.split(".", 1)) for name in names]
    estimates = _source_estimates(config, refs, problems)
    capture_lag = _capture_lag(status)
    sink_lags = {s.name: _sink_lag(s, capture_lag) for s in status.sinks}
    copies = _copies(config, refs, sink_lags, capture_lag, problems)
    last_checks = _reconciliations(config)
    source = config.any_source
    scheme = "postgresql" if isinstance(source, PostgresSourceConfig) else "mariadb"
    where = f"{source.host}:{source.port}" + (
        f"/{source.database}" if isinstance(source, PostgresSourceConfig) else ""
    )
    entries = []
    for ref in refs:
        name = str(ref)
        mine = copies.get(name, ())
        lags = [c.lag_seconds for c in mine if c.lag_seconds is not None]
        entries.append(
            CatalogEntry(
                pipeline=config.name,
                table=name,
                product=table_product(config.catalog, ref.db, ref.table),
                source=f"{scheme}://{where}/{name}",
                source_rows=estimates.get(name),
                copies=mine,
                versions=versions.get(name, TableVersions(name, (), "")).versions,
                lag_seconds=max(lags) if lags else None,
                last_bootstrap=_last_bootstrap(status, name),
                last_reconciliation=last_checks.get(name, "never"),
            )
        )
    return PipelineView(config.name, status.mode, status.source, tuple(entries), tuple(problems))


def _capture_lag(status: PipelineStatus) -> float | None:
    """Kafka mode: seconds since the capture's last committed checkpoint (0 when nothing is left).

    The daemon commits a checkpoint at least every heartbeat while it runs, idle or not, so this
    bounds how old the topic's newest data can be; a stopped daemon's grows, as its data ages.
    """
    if status.mode != "kafka" or status.checkpoint is None or status.checkpoint.committed_at is None:
        return None
    if status.lag_bytes == 0:
        return 0.0
    try:
        committed = dt.datetime.fromisoformat(status.checkpoint.committed_at)
    except ValueError:
        return None
    if committed.tzinfo is None:
        committed = committed.replace(tzinfo=dt.UTC)
    return max(0.0, (dt.datetime.now(dt.UTC) - committed).total_seconds())


def _sink_lag(sink: SinkStatus, capture_lag: float | None) -> float | None:
    """The status's lag; in Kafka mode, a sink with nothing left in Kafka is as fresh as the capture."""
    if sink.lag_seconds is not None:
        return sink.lag_seconds
    return capture_lag if sink.offsets_lag == 0 else None


def _source_estimates(config: PipelineConfig, refs: list[TableRef], problems: list[str]) -> dict[str, int]:
    """The server's row estimates: exact counts would scan every table of every pipeline."""
    from cdc.daemon.mariadb_source import connection_settings
    from cdc.sources.mariadb.connection import control

    if not refs:
        return {}
    if isinstance(config.any_source, PostgresSourceConfig):
        return _pg_estimates(config.any_source, refs, problems)
    out: dict[str, int] = {}
    try:
        with control(connection_settings(config.source), "estimating row counts for `cdc catalog`") as cur:
            for ref in refs:
                cur.execute(
                    "SELECT TABLE_ROWS FROM information_schema.TABLES"
                    " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                    (ref.db, ref.table),
                )
                row = cur.fetchone()
                if row is not None and row[0] is not None:
                    out[str(ref)] = int(row[0])
    except (HeadwaterError, pymysql.Error) as exc:
        problems.append(f"source row estimates: {exc}")
    return out


def _pg_estimates(source: PostgresSourceConfig, refs: list[TableRef], problems: list[str]) -> dict[str, int]:
    """pg_class.reltuples (-1 until the table was first vacuumed or analyzed: unknown then)."""
    import psycopg

    from cdc.sources.postgresql.server import connect
    from cdc.sources.postgresql.source_config import pg_settings

    out: dict[str, int] = {}
    try:
        with connect(pg_settings(source)) as conn:
            for ref in refs:
                row = conn.execute(
                    "SELECT c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = %s AND c.relname = %s",
                    (ref.db, ref.table),
                ).fetchone()
                if row is not None and row[0] is not None and float(str(row[0])) >= 0:
                    out[str(ref)] = int(float(str(row[0])))
    except (HeadwaterError, psycopg.Error) as exc:
        problems.append(f"source row estimates: {exc}")
    return out


def _copies(
    config: PipelineConfig,
    refs: list[TableRef],
    lags: dict[str, float | None],
    capture_lag: float | None,
    problems: list[str],
) -> dict[str, tuple[CopyView, ...]]:
    out: dict[str, list[CopyView]] = {str(r): [] for r in refs}
    if config.stream is not None:
        from cdc.stream.topics import TopicNames

        topics = TopicNames(config.name)
        for ref in refs:
            out[str(ref)].append(CopyView("topic", "", topics.table(ref), None, capture_lag))
    for name, sink in zip(config.sink_names, config.sinks, strict=True):
        taken = [
            r
            for r in refs
            if TableFilter(tuple(sink.tables), tuple(sink.exclude_tables)).accepts(r.db, r.table)
        ]
        if not taken:
            continue
        if isinstance(sink, SqlSinkConfig):
            views = _sql_copies(sink, name, taken, lags.get(name))
        else:
            views = _iceberg_copies(sink, name, taken, lags.get(name))
        for ref, view in zip(taken, views, strict=True):
            out[str(ref)].append(view)
            if view.error:
                problems.append(f"sink {name}: {view.error}")
    # in the order data flows: topic, then history, then serving tables
    return {k: tuple(sorted(v, key=lambda c: _FLOW.index(c.kind))) for k, v in out.items()}


_FLOW = ("topic", "history", "serving")


def _sql_copies(sink: SqlSinkConfig, name: str, refs: list[TableRef], lag: float | None) -> list[CopyView]:
    import sqlalchemy as sa

    from sinks.sql.names import quoted

    url = mask_url_password(str(sink.url))
    targets = [sink.table.format(table=r.table, db=r.db) for r in refs]
    shown = [f"{url}#{(sink.schema_name + '.') if sink.schema_name else ''}{t}" for t in targets]
    counts: list[int | None] = [None] * len(refs)
    error: str | None = None
    try:
        engine = sa.create_engine(str(sink.url))
        try:
            with engine.connect() as conn:
                existing = set(sa.inspect(conn).get_table_names(schema=sink.schema_name))
                for i, target in enumerate(targets):
                    if target in existing:
                        table = sa.table(quoted(target), schema=sink.schema_name)
                        counts[i] = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
        finally:
            engine.dispose()
    except Exception as exc:  # noqa: BLE001 - one sink unreadable: shown, the catalog goes on
        error = mask_url_password(str(exc).splitlines()[0])
    return [CopyView("serving", name, s, c, lag, error) for s, c in zip(shown, counts, strict=True)]


def _iceberg_copies(
    sink: IcebergSinkConfig, name: str, refs: list[TableRef], lag: float | None
) -> list[CopyView]:
    from sinks.iceberg.catalogs import find_history_table, history_identifiers, open_catalog

    out: list[CopyView] = []
    try:
        catalog = open_catalog(sink.catalog)
    except Exception as exc:  # noqa: BLE001 - one sink unreadable: shown, the catalog goes on
        error = mask_url_password(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return [
            CopyView("history", name, history_identifiers(sink.namespace, r)[0], None, lag, error)
            for r in refs
        ]
    for ref in refs:
        try:
            identifier, table = find_history_table(catalog, sink.namespace, ref)
        except Exception as exc:  # noqa: BLE001 - as above
            out.append(
                CopyView("history", name, history_identifiers(sink.namespace, ref)[0], None, lag, str(exc))
            )
            continue
        rows: int | None = None
        if table is not None:
            snapshot = table.current_snapshot()
            total = snapshot.summary.get("total-records") if snapshot and snapshot.summary else None
            rows = int(total) if total is not None else 0
        out.append(CopyView("history", name, identifier, rows, lag))
    return out


def _last_bootstrap(status: PipelineStatus, table: str) -> str:
    state = status.bootstraps
    if state is None:
        return "never"
    for index, job in enumerate(state.jobs):
        if str(job.table) == table:
            doing = "reading" if index == 0 else "queued"
            return f"{doing} since {job.started_at} ({job.rows} rows so far)"
    for done in reversed(state.finished):
        if str(done.table) == table:
            if done.refused:
                return f"refused at {done.finished_at}: {done.refused}"
            return f"finished {done.finished_at} ({done.rows} rows)"
    return "never"


def _reconciliations(config: PipelineConfig) -> dict[str, str]:
    try:
        from reconciler.report import last_results
    except ImportError:  # the reconciler is optional to the catalog
        return {}
    out: dict[str, list[str]] = {}
    for r in last_results(config.state_dir):
        drift = (
            f" (missing {r.missing}, extra {r.extra}, different {r.different})"
            if r.verdict != "match"
            else ""
        )
        out.setdefault(r.table, []).append(f"{r.sink}: {r.verdict}{drift} at {r.at}")
    return {k: "; ".join(v) for k, v in out.items()}
