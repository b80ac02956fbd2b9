"""The SQL serving sink: current state of each source table, upserted by key, with its applied position."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sqlalchemy as sa

from cdc.config.models import SchemaChangePolicy
from cdc.core.errors import (
    BadRowError,
    ConfigError,
    SinkError,
)
from cdc.core.events import ChangeEvent, Op
from cdc.core.positions import Position
from cdc.core.schemas import TableRef, TableSchema
from sinks.contract import AppliedState, PendingSchemaChange, SinkBatch, WriterIdentity
from sinks.sql.codec import Codec, make_codec
from sinks.sql.columnar_apply import (
    UPSERT_BATCHES,
    Prepared,
    apply_columns,
    column_threshold,
    copy_ahead,
    prepare,
)
from sinks.sql.db_errors import access_problem, classify, is_transient
from sinks.sql.dead_letter import bad_rows, key_json, write_dead_letters
from sinks.sql.names import quoted
from sinks.sql.positions_table import Bookkeeping, TableShape
from sinks.sql.schema_follow import sync_schemas
from sinks.sql.schema_sync import build_table
from sinks.sql.sqlite_file import sqlite_file
from sinks.sql.table_keys import TableKeys
from sinks.sql.table_writer import TablePlan, plan_tables, write_plan
from sinks.sql.truncate_fence import fence
from sinks.sql.type_mapping import Dialect, decoder
from sinks.sql.writer_state import check_writer, merged

if TYPE_CHECKING:
    # The PostgreSQL modules import psycopg (~9 MiB of RSS with psycopg_binary's libraries), which
    # a MariaDB or SQLite sink never uses: they are imported where a PostgreSQL sink needs them.
    from sinks.sql.pg_deferred_commit import PendingCommit
    from sinks.sql.pg_stages import KeysExist, Stages

__all__ = ["SqlSink", "SqlSinkSettings"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SqlSinkSettings:
    url: str
    pipeline: str
    table_format: str = "{table}"
    schema: str | None = None
    on_bad_row: str = "stop"  # "stop" | "dead_letter"
    copy_threshold_rows: int | None = 100  # COPY (PostgreSQL), column-wise from Kafka (all); None = never
    # "db.table" -> the columns that key a source table without a primary key in its serving table
    key_columns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    schema_changes: SchemaChangePolicy = SchemaChangePolicy.APPLY
    sqlite_journal: str = "auto"  # SQLite only: "auto" | "wal" | "keep" (sinks/sql/sqlite_file.py)
    # PostgreSQL, column-wise: a batch's COMMIT confirmed at the sink's next call (pg_deferred_commit)
    defer_commit: bool = False


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
        self._schema = None if settings.schema is None else quoted(settings.schema)
        self._book = Bookkeeping(settings.schema)
        self._metadata = sa.MetaData(schema=self._schema)
        self._shapes: dict[str, TableShape] = {}
        self._tables: dict[str, sa.Table] = {}
        self._codecs: dict[tuple[str, str], Codec] = {}
        self._keys = TableKeys(self.name, settings.key_columns)
        self._epoch: int | None = None  # set by claim_writer (embedded mode)
        self._row_exists = False  # the positions row is known to exist
        # PostgreSQL, column-wise: target -> batches still written by upsert alone, after a batch
        # whose inserts met keys the table held (columnar_apply.py)
        self._pg_upserting: dict[str, int] = {}
        self._stages_used: Stages | None = None  # the connection's stage tables, in _apply
        # the truncate fences last read or written (they only rise): filters rows before the schema
        # sync, which runs outside the data's transaction; the stored ones decide under the lock
        self._truncates: Mapping[str, Position] = {}
        copy = self.dialect is Dialect.POSTGRESQL and settings.copy_threshold_rows is not None
        self._copy_threshold = settings.copy_threshold_rows if copy else None
        self.takes_change_columns = column_threshold(self.dialect, settings.copy_threshold_rows) is not None
        self.pending_commit: PendingCommit | None = None  # a batch's COMMIT sent, its result unread
        # batches worked out ahead by prepare_columns (another thread), taken by apply_columns
        self._prepared: list[Prepared] = []
        self._prepared_lock = threading.Lock()
        # PostgreSQL's own failures that apply() catches; none elsewhere (``except ()`` catches nothing)
        self._connection_lost: tuple[type[Exception], ...] = ()
        self._keys_exist: tuple[type[KeysExist], ...] = ()
        if self.dialect is Dialect.POSTGRESQL:
            from sinks.sql.pg_session import ConnectionLost
            from sinks.sql.pg_stages import KeysExist

            self._connection_lost, self._keys_exist = (ConnectionLost,), (KeysExist,)

    # -- the Sink protocol --------------------------------------------------------------------------

    def open(self) -> None:
        if self._engine is not None:
            return
        file = sqlite_file(self._url, self.settings.sqlite_journal, self.name)
        pg = self.dialect is Dialect.POSTGRESQL
        engine = sa.create_engine(self._url, pool_pre_ping=not pg)
        if pg:
            from sinks.sql.pg_session import ping_when_idle

            ping_when_idle(engine)  # not a round trip per batch
        try:
            if file is not None:
                file.set_journal(engine, self.name)
            self._create_bookkeeping(engine)
            with engine.connect() as conn:
                self._load_shapes(conn)
        except sa.exc.DBAPIError as exc:
            engine.dispose()
            raise classify(exc, self.name, "opening") from exc
        self._engine = engine
        log.info("sql sink open: %s (%s), %d tables known", self.name, self.dialect.value, len(self._shapes))

    def _create_bookkeeping(self, engine: sa.Engine) -> None:
        """The schema and the sink's own tables. IF NOT EXISTS does not stop two sinks that open a
        fresh target at the same moment from colliding in PostgreSQL's catalog (a unique violation
        for the loser): the loser tries again and finds them."""
        for attempt in range(5):
            try:
                with engine.begin() as conn:
                    if self._schema is not None:  # a PostgreSQL schema / a MariaDB database
                        conn.execute(sa.schema.CreateSchema(self._schema, if_not_exists=True))
                    self._book.create(conn)
                return
            except sa.exc.DBAPIError as exc:
                if attempt == 4 or is_transient(exc) or access_problem(exc) is not None:
                    raise
                log.info(
                    "%s: creating its tables collided with another writer; again: %s", self.name, exc.orig
                )
                time.sleep(0.05 * (attempt + 1))

    def settle_commit(self) -> None:
        """Read the result of a batch's COMMIT sent and not yet confirmed (``defer_commit``); raise
        as that batch's apply would have if it failed: the run stops, the batch comes again."""
        pending, self.pending_commit = self.pending_commit, None
        if pending is None:
            return
        try:
            pending.confirm()
        except Exception as exc:
            wrapped = exc if isinstance(exc, sa.exc.DBAPIError) else self._driver_error(exc)
            if wrapped is None:
                raise
            raise classify(wrapped, self.name, "the last batch's COMMIT failed: rolled back") from exc

    def claim_writer(self, writer: WriterIdentity) -> None:
        self.settle_commit()
        try:
            with self._require_engine().begin() as conn:
                self._epoch = self._book.claim(conn, self.settings.pipeline, writer.describe())
        except sa.exc.DBAPIError as exc:
            raise classify(exc, self.name, "claiming the sink for this writer") from exc
        log.info("sql sink %s: writer epoch %d claimed by %s", self.name, self._epoch, writer.describe())

    def applied(self) -> AppliedState | None:
        self.settle_commit()
        try:
            with self._require_engine().connect() as conn:
                return self._book.read_state(conn, self.settings.pipeline)
        except sa.exc.DBAPIError as exc:
            raise classify(exc, self.name, "reading the applied position") from exc

    def apply(self, batch: SinkBatch) -> None:
        try:
            try:
                self._apply_batch(batch)
            except self._connection_lost as exc:  # PostgreSQL: nothing was sent on it
                log.info(
                    "%s: its connection was gone (%s); the batch goes again on a new one", self.name, exc
                )
                self._apply_batch(batch)
        except self._connection_lost as exc:  # again: the server is away
            wrapped = self._driver_error(exc.__cause__) if exc.__cause__ is not None else None
            if wrapped is None:
                raise
            raise classify(wrapped, self.name, "the batch was rolled back") from exc
        except sa.exc.DBAPIError as exc:
            raise classify(exc, self.name, "the batch was rolled back") from exc
        except Exception as exc:  # psycopg's own, from statements sent past SQLAlchemy
            wrapped = self._driver_error(exc)
            if wrapped is None:
                raise
            raise classify(wrapped, self.name, "the batch was rolled back") from exc

    def prepare_columns(self, batch: SinkBatch, copy_streams: bool = True) -> None:
        """Work out now, on the caller's thread, what a column-wise apply of ``batch`` needs before
        its transaction (:func:`sinks.sql.columnar_apply.prepare`): embedded mode's daemon thread
        calls it before it hands ``batch`` to the apply thread, which then skips that work if the
        sink's table shapes are still those it was made from. ``copy_streams``: PostgreSQL's COPY
        streams too (sinks/sql/pg_copy_ahead.py). Any failure here is left for the apply, which
        makes it again."""
        try:
            ready = prepare(self, batch)
            if copy_streams:
                copy_ahead(self, ready)
        except Exception as exc:  # noqa: BLE001 - the apply makes it again and raises it as a batch's error
            log.debug("%s: preparing a batch failed (the apply will tell): %s", self.name, exc)
            return
        with self._prepared_lock:
            self._prepared = [*self._prepared[-1:], ready]  # at most two held

    def take_prepared(self, batch: SinkBatch) -> Prepared | None:
        """What :meth:`prepare_columns` made for ``batch`` (once), or None; what was prepared before
        it is let go too (never applied: a batch is prepared just before it is handed over)."""
        with self._prepared_lock:
            held = self._prepared
            for i, ready in enumerate(held):
                if ready.batch is batch:
                    self._prepared = held[i + 1 :]
                    return ready
        return None

    def _apply_batch(self, batch: SinkBatch) -> None:
        if apply_columns(self, batch):  # from Kafka: column-wise, if it can
            return
        try:
            self._apply(batch, direct=True)
        except self._keys_exist as exc:  # rolled back: nothing of the batch was written
            log.info("%s: %s; the batch goes again, by upsert", self.name, exc)
            self._pg_upserting[exc.target] = UPSERT_BATCHES
            self._apply(batch, direct=False)

    def _apply(self, batch: SinkBatch, direct: bool) -> None:
        """``direct``: PostgreSQL COPYs inserts straight into the tables not upserting of late."""
        self.settle_commit()
        self._stages_used = None
        try:
            self._apply_once(batch, direct)
        except BaseException:
            if self._stages_used is not None:
                self._stages_used.forget()  # the stage tables this transaction made went with its rollback
            raise
        if self._stages_used is not None:
            self._stages_used.confirm()

    def _apply_once(self, batch: SinkBatch, direct: bool) -> None:
        engine = self._require_engine()
        # Kafka mode (offsets in the state): the consumer already dropped what this sink holds, by
        # offset; positions from several partitions are not in one order, so none is skipped here.
        from_kafka = bool(batch.state.offsets)
        # (from Kafka nothing is skipped by position: no round trip to read it)
        held = None if from_kafka else self.applied()
        if not from_kafka and held is not None and batch.state.position <= held.position:
            # an old batch re-delivered: everything in it is already here. Still refused to a fenced
            # writer: the embedded daemon probes its claim with exactly such a batch (nothing new)
            if self._epoch is not None:
                with engine.begin() as conn:
                    check_writer(
                        self.name, self._epoch, self._book.read(conn, self.settings.pipeline, lock=True)
                    )
            return
        # a snapshot chunk: the steps below take its head, its other rows are planned at once.
        # (read_batches is imported here, not by every SQL sink: its COPY half imports psycopg)
        rows = None
        if not from_kafka:
            from sinks.sql import read_batches

            rows = read_batches.chunk_rows(batch, held.position if held else None)
        events = self._unapplied(batch if rows is None else rows.head, None if from_kafka else held)
        self._sync_schemas(fence(events, self._truncates).events)
        if not self._row_exists:
            # the positions row is locked by every apply; create it on its own first, so that two
            # writers of a fresh sink do not both insert it
            self._row_exists = self._book.ensure_row(engine, self.settings.pipeline)
        with engine.begin() as conn:
            pg = self.dialect is Dialect.POSTGRESQL
            if pg:
                from sinks.sql import pg_session, pg_stages

                row = pg_session.read_locked(conn, self._book, self.settings.pipeline)
                if self._copy_threshold is not None:
                    self._stages_used = pg_stages.Stages.of(conn)
            else:
                row = self._book.read(conn, self.settings.pipeline, lock=True)
            check_writer(self.name, self._epoch, row)
            current = row.state
            if not from_kafka and current != held:  # another writer moved the position: honour it
                if current is not None and batch.state.position <= current.position:
                    return
                rows = None
                events = self._unapplied(batch, current)
            state = merged(current, batch.state) if from_kafka else batch.state
            fenced = fence(events, row.truncates)
            events = fenced.events
            plans = self._plan(events)
            copy = None
            if rows is not None:
                fences = row.truncates if fenced.truncates is None else fenced.truncates
                target, threshold = self.target_name(rows.first.table), self._copy_threshold
                copy = read_batches.add_rest(plans, rows, events, fences, target, self._codec, threshold)
            if any(p.target not in self._shapes for p in plans.values()):
                self._load_shapes(conn)  # a truncate of a table another writer created
            bad = bad_rows(plans, self._codec)
            if rows is not None:  # dead letters of the chunk's rows name their own events
                bad = read_batches.real_events(bad, rows, self._codec)
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
            skip = {(b.target_table, b.key) for b in bad}
            for plan in plans.values():
                shape = self._shapes.get(plan.target)
                if shape is not None:  # else only a truncate of a table never held: nothing to empty
                    table = self._table(plan.target)
                    upserting = self._pg_upserting.get(plan.target, 0)
                    write_plan(
                        conn, table, shape, plan, skip, self._codec, self.dialect, self._copy_threshold,
                        self._stages_used, direct and not upserting,
                    )  # fmt: skip
                    if upserting and direct:
                        self._pg_upserting[plan.target] = upserting - 1
            if copy is not None:  # the chunk's other rows, column-wise (read_batch_copy.py)
                copy.write(conn, self._table(copy.target), self._shapes[copy.target].primary_key)
            if pg:  # the write and the commit in one round trip
                pg_session.commit_with_state(
                    conn, self._book, self.settings.pipeline, state, row.row_exists, fenced.truncates
                )
            else:
                self._book.write_state(
                    conn, self.settings.pipeline, state, exists=row.row_exists, truncates=fenced.truncates
                )
        self._truncates = row.truncates if fenced.truncates is None else fenced.truncates
        log.debug(
            "applied %d events to %d tables up to %s",
            len(events),
            len(plans),
            batch.state.position,
        )

    def flush(self) -> None:
        """Every ``apply`` commits; with ``defer_commit``, the last one's result is read here."""
        self.settle_commit()

    def close(self) -> None:
        try:
            self.settle_commit()
        finally:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    # -- schema changes held back (AcceptsSchemaChanges) ---------------------------------------------

    def pending_schema_changes(self) -> list[PendingSchemaChange]:
        self.settle_commit()
        with self._require_engine().connect() as conn:
            return [c for c, _, accepted in self._book.read_schema_changes(conn) if not accepted]

    def accept_schema_change(self, table: TableRef) -> PendingSchemaChange | None:
        target = self.target_name(table)
        self.settle_commit()
        with self._require_engine().begin() as conn:
            pending = [
                c for c, t, accepted in self._book.read_schema_changes(conn) if t == target and not accepted
            ]
            if not pending:
                return None
            self._book.accept_schema_changes(conn, target)
        return pending[0]

    # -- reading back (behaviour suite, reconciliation) -----------------------------------------------

    def target_name(self, ref: TableRef) -> str:
        return self.settings.table_format.format(table=ref.table, db=ref.db)

    def read_rows(self, ref: TableRef) -> list[dict[str, object]]:
        """Every row of ``ref``'s target table, values decoded back to the source's Python types."""
        target = self.target_name(ref)
        self.settle_commit()
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
        self.settle_commit()
        with self._require_engine().connect() as conn:
            self._load_shapes(conn)
        shape = self._shapes.get(self.target_name(ref))
        return shape.primary_key if shape is not None else None

    # -- internals ----------------------------------------------------------------------------------

    def _driver_error(self, exc: BaseException) -> sa.exc.DBAPIError | None:
        """A psycopg error raised past SQLAlchemy, wrapped as SQLAlchemy would have (PostgreSQL
        only: the other drivers' errors always come through SQLAlchemy)."""
        if self.dialect is not Dialect.POSTGRESQL:
            return None
        from sinks.sql.pg_stages import as_dbapi_error

        return as_dbapi_error(exc)

    def _require_engine(self) -> sa.Engine:
        if self._engine is None:
            raise SinkError(f"{self.name}: open() the sink before using it")
        return self._engine

    def _load_shapes(self, conn: sa.Connection) -> None:
        shapes = self._book.read_shapes(conn)
        if shapes != self._shapes:
            self._shapes = shapes
            self._forget_tables()

    def _forget_tables(self) -> None:
        self._tables.clear()
        self._codecs.clear()
        self._metadata = sa.MetaData(schema=self._schema)

    def _table(self, target: str) -> sa.Table:
        table = self._tables.get(target)
        if table is None:
            table = build_table(self._metadata, target, self._shapes[target], self.dialect)
            self._tables[target] = table
        return table

    def _unapplied(self, batch: SinkBatch, held: AppliedState | None) -> list[ChangeEvent]:
        """The batch's row events this sink still has to apply (keyless tables it refuses left out;
        those of a keyless table it already serves kept: the schema sync holds them back)."""
        out = []
        reloaded = False
        served: TableSchema | None = None  # the last schema found keyed: a batch is runs of one table
        for r in batch.records:
            if not isinstance(r, ChangeEvent) or (held is not None and r.position <= held.position):
                continue
            if r.schema is served:
                out.append(r)
                continue
            if r.op is not Op.TRUNCATE:
                if self._keys.keyed(r.schema) is not None:
                    served = r.schema
                    out.append(r)
                    continue
                target = self.target_name(r.schema.ref)
                if target not in self._shapes and not reloaded:  # another writer may have created it
                    with self._require_engine().connect() as conn:
                        self._load_shapes(conn)
                    reloaded = True
                if target not in self._shapes:
                    self._keys.refuse(r.schema.ref)
                    continue
            out.append(r)
        return out

    def _sync_schemas(self, events: Iterable[ChangeEvent]) -> None:
        """Create and alter target tables for the versions in ``events`` (sinks/sql/schema_follow.py)."""
        sync_schemas(self, events)

    def _plan(self, events: Sequence[ChangeEvent]) -> dict[str, TablePlan]:
        """Collapse the batch per table and key, in position order: the last change per key wins."""
        return plan_tables(events, self.target_name, self._codec)

    def _codec(self, target: str, schema: TableSchema) -> Codec:
        codec = self._codecs.get((target, schema.version))
        if codec is None:
            keyed = self._keys.keyed(schema)
            assert keyed is not None  # refused tables never get this far (_unapplied)
            codec = make_codec(self._shapes[target], keyed, self.dialect)
            self._codecs[(target, schema.version)] = codec
        return codec
