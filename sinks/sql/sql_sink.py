"""The SQL serving sink: current state of each source table, upserted by key, with its applied position."""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from cdc.core.errors import BadRowError, ConfigError, SinkError, SinkUnavailable
from cdc.core.events import ChangeEvent, Op, RowImage
from cdc.core.schemas import TableRef, TableSchema
from sinks.contract import AppliedState, SinkBatch
from sinks.sql.dead_letter import BadRow, key_json, write_dead_letters
from sinks.sql.positions_table import Bookkeeping, TableShape
from sinks.sql.postgres_copy import copy_delete, copy_upsert
from sinks.sql.schema_sync import build_table, ddl_statements, evolve
from sinks.sql.type_mapping import Dialect, checker, decoder, encoder, pg_copy_type, target_type

__all__ = ["SqlSink", "SqlSinkSettings"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SqlSinkSettings:
    url: str
    pipeline: str
    table_format: str = "{table}"
    schema: str | None = None
    on_bad_row: str = "stop"  # "stop" | "dead_letter"
    copy_threshold_rows: int | None = 1_000  # PostgreSQL: COPY path from this many rows; None = never


@dataclass(slots=True)
class _TablePlan:
    """What a batch does to one target table once collapsed: optional wipe, then one action per key."""

    target: str
    truncate: bool = False
    # key -> (event whose image is written, or None for a delete; the event that decided it)
    actions: dict[RowImage, tuple[RowImage | None, ChangeEvent]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Codec:
    """Per (table, schema version): key extraction, value checks and encoders for the images."""

    names: tuple[str, ...]
    key_of: Callable[[RowImage], RowImage]
    checks: tuple[tuple[int, Callable[[Any], str | None]], ...]  # (column index, check)
    key_checks: tuple[tuple[int, Callable[[Any], str | None]], ...]  # (index in the key, check)
    encoders: tuple[Callable[[Any], Any] | None, ...] | None  # None: every value binds as it is


# SQLSTATE classes worth retrying: connection exception, transaction rollback (serialization failure,
# deadlock), insufficient resources, operator intervention (admin shutdown, crash recovery).
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57")
# MariaDB/MySQL: too many connections, shutdown in progress, lock wait timeout, deadlock, connection
# killed, can't connect, server gone away, lost connection (during query / at handshake)
_TRANSIENT_MYSQL_CODES = {1040, 1053, 1205, 1213, 1927, 2002, 2003, 2006, 2013, 2055}


def _is_transient(exc: sa.exc.DBAPIError) -> bool:
    """Whether the same apply may succeed later (a lost connection, a deadlock), not a data problem."""
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):  # pymysql: (errno, message)
        return args[0] in _TRANSIENT_MYSQL_CODES
    sqlite_code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(sqlite_code, int):
        return sqlite_code & 0xFF in (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED
    sqlstate = getattr(orig, "sqlstate", None)  # psycopg
    if isinstance(sqlstate, str):
        return sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES
    # no SQLSTATE: the driver failed before the server answered (connection refused, socket closed)
    return isinstance(exc, sa.exc.OperationalError)


def _key_getter(idx: tuple[int, ...]) -> Callable[[RowImage], RowImage]:
    if len(idx) == 1:
        (i,) = idx
        return lambda image: (image[i],)
    getter = operator.itemgetter(*idx)
    return lambda image: tuple(getter(image))


class SqlSink:
    """One target table per source table, named by ``table_format``; see the package docstring."""

    def __init__(self, settings: SqlSinkSettings) -> None:
        self.settings = settings
        url = sa.engine.make_url(settings.url)
        self.dialect = Dialect.of(url.get_backend_name())
        if self.dialect is Dialect.SQLITE and settings.schema is not None:
            raise ConfigError("sinks[].schema: SQLite has no schemas; leave it unset")
        if settings.on_bad_row not in ("stop", "dead_letter"):
            raise ConfigError(
                f"sinks[].on_bad_row must be 'stop' or 'dead_letter', got {settings.on_bad_row!r}"
            )
        self.name = f"sql:{url.render_as_string(hide_password=True)}"
        self._url = url
        self._engine: sa.Engine | None = None
        self._book = Bookkeeping(settings.schema)
        self._metadata = sa.MetaData(schema=settings.schema)
        self._shapes: dict[str, TableShape] = {}
        self._tables: dict[str, sa.Table] = {}
        self._codecs: dict[tuple[str, str], _Codec] = {}

    # -- the Sink protocol --------------------------------------------------------------------------

    def open(self) -> None:
        if self._engine is not None:
            return
        url = sa.engine.make_url(self._url)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)  # as a state dir would be
        engine = sa.create_engine(self._url, pool_pre_ping=True)
        try:
            with engine.begin() as conn:
                if self.settings.schema is not None:  # a PostgreSQL schema / a MariaDB database
                    conn.execute(sa.schema.CreateSchema(self.settings.schema, if_not_exists=True))
                self._book.create(conn)
            with engine.connect() as conn:
                self._load_shapes(conn)
        except sa.exc.DBAPIError as exc:
            engine.dispose()
            if not _is_transient(exc):
                raise SinkError(f"{self.name}: {exc.orig or exc}") from exc
            raise SinkUnavailable(f"{self.name}: {exc.orig or exc}") from exc
        self._engine = engine
        log.info("sql sink open: %s (%s), %d tables known", self.name, self.dialect.value, len(self._shapes))

    def applied(self) -> AppliedState | None:
        try:
            with self._require_engine().connect() as conn:
                return self._book.read_state(conn, self.settings.pipeline)
        except sa.exc.DBAPIError as exc:
            if not _is_transient(exc):
                raise
            raise SinkUnavailable(f"{self.name}: {exc.orig or exc}") from exc

    def apply(self, batch: SinkBatch) -> None:
        try:
            self._apply(batch)
        except sa.exc.DBAPIError as exc:
            if _is_transient(exc):
                raise SinkUnavailable(f"{self.name}: {exc.orig or exc}") from exc
            raise SinkError(f"{self.name}: the batch was rolled back: {exc.orig or exc}") from exc

    def _apply(self, batch: SinkBatch) -> None:
        engine = self._require_engine()
        # Kafka mode (offsets in the state): the consumer already dropped what this sink holds, by
        # offset; positions from several partitions are not in one order, so none is skipped here.
        from_kafka = bool(batch.state.offsets)
        held = self.applied()
        if not from_kafka and held is not None and batch.state.position <= held.position:
            return  # an old batch re-delivered: everything in it is already here
        events = self._unapplied(batch, None if from_kafka else held)
        self._sync_schemas(events)
        with engine.begin() as conn:
            current = self._book.read_state(conn, self.settings.pipeline, lock=True)
            if not from_kafka and current != held:  # another writer moved the position: honour it
                if current is not None and batch.state.position <= current.position:
                    return
                events = self._unapplied(batch, current)
            state = _merged(current, batch.state) if from_kafka else batch.state
            plans = self._plan(events)
            bad = self._bad_rows(plans)
            if bad:
                if self.settings.on_bad_row == "stop":
                    first = bad[0]
                    raise BadRowError(
                        f"{first.event.table} (target table {first.target_table})",
                        key_json(first.key),
                        first.column,
                        first.reason,
                    )
                write_dead_letters(conn, self._book, self.settings.pipeline, bad)
                log.warning(
                    "dead-lettered %d rows (first: %s key %s: %s)",
                    len(bad),
                    bad[0].target_table,
                    key_json(bad[0].key),
                    bad[0].reason,
                )
            for plan in plans.values():
                self._write(conn, plan, {(b.target_table, b.key) for b in bad})
            self._book.write_state(conn, self.settings.pipeline, state, exists=current is not None)
        log.debug(
            "applied %d events to %d tables up to %s",
            len(events),
            len(plans),
            batch.state.position,
        )

    def flush(self) -> None:
        """Nothing to do: every ``apply`` commits."""

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    # -- reading back (behaviour suite, reconciliation) -----------------------------------------------

    def target_name(self, ref: TableRef) -> str:
        return self.settings.table_format.format(table=ref.table, db=ref.db)

    def read_rows(self, ref: TableRef) -> list[dict[str, object]]:
        """Every row of ``ref``'s target table, values decoded back to the source's Python types."""
        target = self.target_name(ref)
        with self._require_engine().connect() as conn:
            self._load_shapes(conn)
            shape = self._shapes.get(target)
            if shape is None:
                return []
            table = self._table(target)
            decoders = [decoder(c.arrow_type, self.dialect) for c in shape.columns]
            rows = conn.execute(sa.select(*(table.c[c.name] for c in shape.columns))).all()
        return [
            {
                c.name: v if dec is None or v is None else dec(v)
                for c, dec, v in zip(shape.columns, decoders, row, strict=True)
            }
            for row in rows
        ]

    def primary_key(self, ref: TableRef) -> tuple[str, ...] | None:
        """The key columns of ``ref``'s target table; None if the sink has not created it."""
        with self._require_engine().connect() as conn:
            self._load_shapes(conn)
        shape = self._shapes.get(self.target_name(ref))
        return shape.primary_key if shape is not None else None

    # -- internals ----------------------------------------------------------------------------------

    def _require_engine(self) -> sa.Engine:
        if self._engine is None:
            raise SinkError(f"{self.name}: open() the sink before using it")
        return self._engine

    def _load_shapes(self, conn: sa.Connection) -> None:
        shapes = self._book.read_shapes(conn)
        if shapes != self._shapes:
            self._shapes = shapes
            self._tables.clear()
            self._metadata = sa.MetaData(schema=self.settings.schema)

    def _table(self, target: str) -> sa.Table:
        table = self._tables.get(target)
        if table is None:
            table = build_table(self._metadata, target, self._shapes[target], self.dialect)
            self._tables[target] = table
        return table

    @staticmethod
    def _unapplied(batch: SinkBatch, held: AppliedState | None) -> list[ChangeEvent]:
        return [
            r for r in batch.records
            if isinstance(r, ChangeEvent) and (held is None or r.position > held.position)
        ]  # fmt: skip

    def _sync_schemas(self, events: Iterable[ChangeEvent]) -> None:
        """Create and alter target tables for the schema versions in ``events`` (before the data).

        Runs in its own transaction: MariaDB commits DDL implicitly anyway. Re-running it after a crash
        is harmless (the version is recorded; ADD COLUMN IF NOT EXISTS).
        """
        # events of one table share their schema object: dedupe by identity first (cheap), then by
        # (table, version), keeping first-seen (position) order
        by_identity = {id(e.schema): e.schema for e in events}
        pending = {(s.ref, s.version): s for s in by_identity.values()}.values()
        todo = [s for s in pending if s.version not in self._known_versions(self.target_name(s.ref))]
        if not todo:
            return
        engine = self._require_engine()
        with engine.begin() as conn:
            self._load_shapes(conn)
            for schema in todo:
                target = self.target_name(schema.ref)
                old = self._shapes.get(target)
                new, steps = evolve(target, old, schema, self.dialect)
                if new == old:
                    continue
                if old is None:
                    table = build_table(sa.MetaData(schema=self.settings.schema), target, new, self.dialect)
                    table.create(conn, checkfirst=True)
                    log.info("created table %s for %s", target, schema.ref)
                else:
                    statements = ddl_statements(self._table(target), steps, self.dialect, engine.dialect, new)
                    for statement in statements:
                        log.info("schema change on %s: %s", target, statement)
                        conn.execute(sa.text(statement))
                self._book.write_shape(conn, target, new, exists=old is not None)
                self._shapes[target] = new
                self._tables.pop(target, None)
                self._metadata = sa.MetaData(schema=self.settings.schema)
                self._tables.clear()

    def _known_versions(self, target: str) -> tuple[str, ...]:
        shape = self._shapes.get(target)
        return shape.versions if shape is not None else ()

    def _plan(self, events: Sequence[ChangeEvent]) -> dict[str, _TablePlan]:
        """Collapse the batch per table and key, in position order: the last change per key wins."""
        plans: dict[str, _TablePlan] = {}
        # by schema object identity: the objects live as long as ``events``, and a batch has few of them
        codecs: dict[int, tuple[_TablePlan, _Codec]] = {}
        for event in events:
            schema = event.schema
            found = codecs.get(id(schema))
            if found is None:
                target = self.target_name(schema.ref)
                plan = plans.get(target)
                if plan is None:
                    plan = plans[target] = _TablePlan(target)
                found = codecs[id(schema)] = (plan, self._codec(target, schema))
            plan, codec = found
            op = event.op
            if op is Op.TRUNCATE:
                plan.truncate = True
                plan.actions.clear()  # everything before the truncate is wiped with the table
                continue
            if op is Op.DELETE:
                image = event.before
                key = event.key if image is None else codec.key_of(image)
                if key is None:
                    raise SinkError(
                        f"{event.table}: delete at {event.position} carries neither key nor image"
                    )
                plan.actions[key] = (None, event)
                continue
            after = event.after
            if after is None:
                raise SinkError(f"{event.table}: {op.value} at {event.position} carries no after image")
            key = codec.key_of(after)
            if op is Op.UPDATE and event.before is not None:
                old_key = codec.key_of(event.before)
                if old_key != key:  # the key itself changed: the old row goes away
                    plan.actions[old_key] = (None, event)
            plan.actions[key] = (after, event)
        return plans

    def _codec(self, target: str, schema: TableSchema) -> _Codec:
        codec = self._codecs.get((target, schema.version))
        if codec is None:
            targets = tuple(target_type(c) for c in schema.columns)
            checks = tuple(
                (i, check) for i, t in enumerate(targets) if (check := checker(t, self.dialect)) is not None
            )
            idx = schema.key_indexes()
            key_checks = tuple((idx.index(i), check) for i, check in checks if i in idx)
            encoders = tuple(encoder(c.arrow_type, self.dialect) for c in schema.columns)
            codec = _Codec(
                schema.column_names,
                _key_getter(idx),
                checks,
                key_checks,
                encoders if any(e is not None for e in encoders) else None,
            )
            self._codecs[(target, schema.version)] = codec
        return codec

    def _bad_rows(self, plans: dict[str, _TablePlan]) -> list[BadRow]:
        bad: list[BadRow] = []
        for plan in plans.values():
            codec: _Codec | None = None
            version = ""
            for key, (image, event) in plan.actions.items():
                if codec is None or event.schema.version != version:
                    codec, version = self._codec(plan.target, event.schema), event.schema.version
                if image is None:
                    for n, check in codec.key_checks:
                        reason = check(key[n])
                        if reason is not None:
                            bad.append(BadRow(event, plan.target, key, event.schema.primary_key[n], reason))
                            break
                    continue
                for i, check in codec.checks:
                    reason = check(image[i])
                    if reason is not None:
                        bad.append(BadRow(event, plan.target, key, codec.names[i], reason))
                        break
        return bad

    def _write(self, conn: sa.Connection, plan: _TablePlan, skip: set[tuple[str, RowImage]]) -> None:
        table = self._table(plan.target)
        shape = self._shapes[plan.target]
        pk = shape.primary_key
        if plan.truncate:
            conn.execute(sa.delete(table))
        deletes: list[RowImage] = []
        upserts: dict[tuple[str, ...], list[Sequence[Any]]] = {}
        key_encoders = [encoder(shape.column(k).arrow_type, self.dialect) for k in pk]  # type: ignore[union-attr]
        for key, (image, event) in plan.actions.items():
            if (plan.target, key) in skip:
                continue
            if image is None:
                deletes.append(
                    tuple(
                        v if e is None or v is None else e(v) for v, e in zip(key, key_encoders, strict=True)
                    )
                )
                continue
            codec = self._codec(plan.target, event.schema)
            encoders = codec.encoders
            if encoders is None:
                upserts.setdefault(codec.names, []).append(image)
            else:
                row = [v if e is None or v is None else e(v) for v, e in zip(image, encoders, strict=True)]
                upserts.setdefault(codec.names, []).append(row)
        copy = self.dialect is Dialect.POSTGRESQL and self.settings.copy_threshold_rows is not None
        threshold = self.settings.copy_threshold_rows or 0
        if deletes:
            if copy and len(deletes) >= threshold:
                copy_delete(conn, table, pk, self._copy_types(shape, pk), deletes)
            else:
                stmt = sa.delete(table).where(
                    sa.and_(*(table.c[k] == sa.bindparam(f"k{i}") for i, k in enumerate(pk)))
                )
                conn.execute(stmt, [{f"k{i}": v for i, v in enumerate(key)} for key in deletes])
        for names, rows in upserts.items():
            if copy and len(rows) >= threshold:
                copy_upsert(conn, table, names, self._copy_types(shape, names), rows, pk)
            else:
                conn.execute(
                    self._upsert(table, names, pk), [dict(zip(names, row, strict=True)) for row in rows]
                )

    @staticmethod
    def _copy_types(shape: TableShape, names: Sequence[str]) -> list[str]:
        by_name = {c.name: c for c in shape.columns}
        return [pg_copy_type(by_name[n].arrow_type) for n in names]

    def _upsert(self, table: sa.Table, names: Sequence[str], pk: Sequence[str]) -> sa.Executable:
        rest = [n for n in names if n not in pk]
        if self.dialect is Dialect.MARIADB:
            # pymysql's executemany rewrites this into multi-row VALUES statements itself
            my = mysql.insert(table)
            return my.on_duplicate_key_update({n: my.inserted[n] for n in (rest or pk[:1])})
        ins: Any = postgresql.insert(table) if self.dialect is Dialect.POSTGRESQL else sqlite.insert(table)
        if rest:
            stmt = ins.on_conflict_do_update(index_elements=list(pk), set_={n: ins.excluded[n] for n in rest})
        else:
            stmt = ins.on_conflict_do_nothing(index_elements=list(pk))
        # executemany of ON CONFLICT runs one statement per row (psycopg pipelines them); RETURNING would
        # make SQLAlchemy batch rows into multi-row VALUES, which measured no faster here: large
        # PostgreSQL batches take the COPY path instead.
        upsert: sa.Executable = stmt
        return upsert


def _merged(current: AppliedState | None, batch: AppliedState) -> AppliedState:
    """Kafka mode: the batch's partitions merged into the stored offsets (other `cdc sink`
    processes own the rest); the position kept is the highest seen, for status only."""
    if current is None:
        return batch
    offsets = dict(current.offsets)
    offsets.update(batch.offsets)
    return AppliedState(max(current.position, batch.position), offsets)
