"""The sink's own tables: applied positions (per pipeline) and the known shape of each target table.

``_headwater_positions`` is written in the same transaction as the rows it covers, which is what makes
a serving database exactly-once: after a crash either the rows and the position are there, or neither.
``_headwater_tables`` remembers, per target table, the source columns it was built from and every
schema version already followed, so that a new sink object (after a restart) compares an incoming
schema against the table as it really is.

Writer fencing (embedded mode): ``writer_epoch`` and ``writer`` in the positions row. A claim adds
one to the epoch in its own transaction; every apply of a writer that claimed re-reads the row under
a lock (``SELECT ... FOR UPDATE``; on SQLite, a no-op UPDATE first takes the database's write lock)
in the data's transaction, so a writer whose epoch is no longer the stored one commits nothing.
A claim on a sink that has applied nothing stores the row with an empty position (read as None).

Truncate fences: ``truncates`` in the positions row, JSON {"db.table": position of the last truncate
applied}, written in the same transaction as the rows (see :mod:`sinks.sql.truncate_fence`). It lives
in the pipeline's row, not per target table, because positions are only comparable within one
source, and because every apply already reads that row under its lock: the fence costs no query.

Tables of older releases get the added columns at open.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from cdc.core.positions import Position
from cdc.core.schemas import Column, TableRef
from sinks.contract import AppliedState, PendingSchemaChange
from sinks.sql.names import quoted

__all__ = ["Bookkeeping", "Held", "TableShape"]

POSITIONS_TABLE = "_headwater_positions"
TABLES_TABLE = "_headwater_tables"
DEAD_LETTERS_TABLE = "_headwater_dead_letters"
SCHEMA_CHANGES_TABLE = "_headwater_schema_changes"


@dataclass(frozen=True, slots=True)
class Held:
    """The positions row as one transaction read it."""

    state: AppliedState | None  # None: nothing applied yet (no row, or a claim's empty position)
    row_exists: bool
    epoch: int | None  # the last claim's writer epoch; None if no writer ever claimed
    writer: str | None  # WriterIdentity.describe() of that claim
    # "db.table" -> position of the last truncate applied (the fence below which rows are older)
    truncates: Mapping[str, Position] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TableShape:
    """A target table as the sink built it: its columns and key, and how each source version maps on.

    ``columns`` are the target's columns (named as the latest source version names them, typed as
    wide as any version needed); ``mappings`` give, per schema version followed, the target column of
    each of that version's source columns (None: the column was dropped since), so that rows of an
    older version arriving late (Kafka, several partitions) land in the right columns.
    """

    source: str  # "db.table"
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    versions: tuple[str, ...]  # every source schema version whose rows this table can take
    # the latest version's source columns and key (diffed against the next version); () = `columns`
    source_columns: tuple[Column, ...] = ()
    latest_position: str = ""  # a position of the latest version's rows ('' = unknown)
    mappings: tuple[tuple[str, tuple[str | None, ...]], ...] = ()
    latest_version: str = ""  # '' = the last of ``versions`` (tables of older releases)

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def latest_columns(self) -> tuple[Column, ...]:
        return self.source_columns or self.columns

    @property
    def latest(self) -> str:
        return self.latest_version or (self.versions[-1] if self.versions else "")

    def follows(self, version: str, position: Position) -> bool:
        """Whether rows of ``version`` at ``position`` fit the table without a change.

        A known version fits, unless its rows come after the latest version's: then the source went
        back to that shape (ADD then DROP of one column), which is a change like any other.
        """
        if version not in self.versions:
            return False
        if version == self.latest or not self.latest_position:
            return True
        return position < Position.parse(self.latest_position)

    def mapping(self, version: str) -> tuple[str | None, ...] | None:
        return next((m for v, m in self.mappings if v == version), None)

    def to_json(self) -> str:
        return json.dumps(
            {
                "source": self.source,
                "columns": _columns_json(self.columns),
                "primary_key": list(self.primary_key),
                "versions": list(self.versions),
                "source_columns": _columns_json(self.source_columns),
                "latest_position": self.latest_position,
                "mappings": [[v, list(m)] for v, m in self.mappings],
                "latest_version": self.latest_version,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> TableShape:
        raw = json.loads(text)
        return cls(
            raw["source"],
            _columns_from_json(raw["columns"]),
            tuple(raw["primary_key"]),
            tuple(raw["versions"]),
            _columns_from_json(raw.get("source_columns", [])),
            raw.get("latest_position", ""),
            tuple((v, tuple(m)) for v, m in raw.get("mappings", [])),
            raw.get("latest_version", ""),
        )


def _columns_json(columns: tuple[Column, ...]) -> list[list[object]]:
    return [c.to_row() for c in columns]


def _columns_from_json(raw: list[list[object]]) -> tuple[Column, ...]:
    return tuple(Column.from_row(row) for row in raw)


class Bookkeeping:
    """Table definitions and reads/writes of the sink's own tables (in ``schema`` when one is set)."""

    def __init__(self, schema: str | None) -> None:
        self._truncates_text = ""
        self._truncates_parsed: Mapping[str, Position] = {}
        # the statements of every apply, built once (building them took ~0.3 ms each, a batch)
        self._statements: dict[tuple[object, ...], Any] = {}
        self.metadata = sa.MetaData(schema=None if schema is None else quoted(schema))
        self.positions = sa.Table(
            quoted(POSITIONS_TABLE),
            self.metadata,
            sa.Column("pipeline", sa.String(200), primary_key=True),
            sa.Column("position", sa.String(255), nullable=False),  # '' = nothing applied yet
            sa.Column("offsets", sa.Text, nullable=False),  # JSON {"topic:partition": next offset}
            sa.Column("updated_at", sa.DateTime, nullable=False),
            *self._added_columns(),
        )
        self.tables = sa.Table(
            quoted(TABLES_TABLE),
            self.metadata,
            sa.Column("target_table", sa.String(200), primary_key=True),
            sa.Column("shape", sa.Text, nullable=False),  # TableShape JSON
        )
        self.schema_changes = sa.Table(
            quoted(SCHEMA_CHANGES_TABLE),
            self.metadata,
            sa.Column("target_table", sa.String(200), primary_key=True),
            sa.Column("to_version", sa.String(64), primary_key=True),
            sa.Column("source_table", sa.String(400), nullable=False),
            sa.Column("from_version", sa.String(64), nullable=False),
            sa.Column("change", sa.Text, nullable=False),  # SchemaDiff.describe()
            sa.Column("position", sa.String(255), nullable=False),
            sa.Column("accepted", sa.Boolean, nullable=False),
            sa.Column("recorded_at", sa.DateTime, nullable=False),
        )
        self.dead_letters = sa.Table(
            DEAD_LETTERS_TABLE,
            self.metadata,
            sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                      autoincrement=True),
            sa.Column("pipeline", sa.String(200), nullable=False),
            sa.Column("source_table", sa.String(400), nullable=False),
            sa.Column("target_table", sa.String(200), nullable=False),
            sa.Column("op", sa.String(1), nullable=False),
            sa.Column("key", sa.Text, nullable=False),  # JSON array
            sa.Column("position", sa.String(255), nullable=False),
            sa.Column("column_name", sa.String(200), nullable=False),
            sa.Column("reason", sa.Text, nullable=False),
            sa.Column("payload", sa.Text, nullable=False),  # JSON object of the row image
            sa.Column("created_at", sa.DateTime, nullable=False),
        )  # fmt: skip

    @staticmethod
    def _added_columns() -> tuple[sa.Column[object], ...]:
        """Columns later releases added to the positions table (nullable: added at open)."""
        return (
            sa.Column("writer_epoch", sa.BigInteger, nullable=True),
            sa.Column("writer", sa.String(400), nullable=True),
            sa.Column("truncates", sa.Text, nullable=True),  # JSON {"db.table": position}
        )

    def create(self, conn: sa.Connection) -> None:
        for table in self.metadata.sorted_tables:
            # IF NOT EXISTS: two sinks opening one fresh database at once must not race
            conn.execute(sa.schema.CreateTable(table, if_not_exists=True))
        held = {c["name"] for c in sa.inspect(conn).get_columns(POSITIONS_TABLE, schema=self.metadata.schema)}
        prep = conn.dialect.identifier_preparer
        for column in self._added_columns():
            if column.name not in held:  # a positions table of an older release
                type_sql = column.type.compile(dialect=conn.dialect)
                conn.execute(
                    sa.text(
                        f"ALTER TABLE {prep.format_table(self.positions)} "
                        f"ADD COLUMN {prep.quote_identifier(column.name)} {type_sql} NULL"
                    )
                )

    def read_state(self, conn: sa.Connection, pipeline: str) -> AppliedState | None:
        return self.read(conn, pipeline).state

    def read(self, conn: sa.Connection, pipeline: str, lock: bool = False) -> Held:
        """The positions row; with ``lock``, held until the transaction ends (the writer check)."""
        p = self.positions
        if lock and conn.dialect.name == "sqlite":
            # pysqlite starts the transaction only at the first write: take the write lock now, so
            # that what is read stays true until commit
            take = self._statements.get(("take",))
            if take is None:
                match = p.c.pipeline == sa.bindparam("pipeline_key")
                take = p.update().where(match).values(pipeline=p.c.pipeline)
                self._statements["take",] = take
            conn.execute(take, {"pipeline_key": pipeline})
        read = self._statements.get(("read", lock))
        if read is None:
            read = self._statements["read", lock] = self.read_statement(lock)
        row = conn.execute(read, {"pipeline_key": pipeline}).first()
        return self.held(row)

    def read_statement(self, lock: bool) -> sa.Select[Any]:
        """The read of the row of parameter ``pipeline_key`` (:meth:`held` makes it a :class:`Held`)."""
        p = self.positions
        query = sa.select(p.c.position, p.c.offsets, p.c.writer_epoch, p.c.writer, p.c.truncates).where(
            p.c.pipeline == sa.bindparam("pipeline_key")
        )
        return query.with_for_update() if lock else query

    def held(self, row: Sequence[Any] | None) -> Held:
        """The positions row as :meth:`read_statement` returned it (None: no row)."""
        if row is None:
            return Held(None, False, None, None)
        position, offsets_text, writer_epoch, writer, truncates = row
        state = None
        if position:
            offsets = {str(k): int(v) for k, v in json.loads(offsets_text).items()}
            state = AppliedState(Position.parse(position), offsets)
        epoch = None if writer_epoch is None else int(writer_epoch)
        return Held(state, True, epoch, writer, self._truncates(truncates))

    def _truncates(self, text: str | None) -> Mapping[str, Position]:
        # read on every apply: parsed once per distinct text (it changes only with a truncate)
        if not text:
            return {}
        if text != self._truncates_text:
            raw = json.loads(text)
            self._truncates_parsed = {str(k): Position.parse(str(v)) for k, v in raw.items()}
            self._truncates_text = text
        return self._truncates_parsed

    def ensure_row(self, engine: sa.Engine, pipeline: str) -> bool:
        """Create the positions row (empty position) unless it exists; a concurrent insert is fine."""
        try:
            with engine.begin() as conn:
                if not self.read(conn, pipeline).row_exists:
                    conn.execute(
                        self.positions.insert(),
                        {"pipeline": pipeline, "position": "", "offsets": "{}", "updated_at": _now()},
                    )
        except sa.exc.IntegrityError:
            pass  # another writer inserted it first
        return True

    def claim(self, conn: sa.Connection, pipeline: str, writer: str) -> int:
        """Make ``writer`` the positions row's writer with the next epoch; returns that epoch."""
        held = self.read(conn, pipeline, lock=True)
        epoch = (held.epoch or 0) + 1
        values = {"writer_epoch": epoch, "writer": writer, "updated_at": _now()}
        if held.row_exists:
            conn.execute(self.positions.update().where(self.positions.c.pipeline == pipeline), values)
        else:
            conn.execute(
                self.positions.insert(), {"pipeline": pipeline, "position": "", "offsets": "{}", **values}
            )
        return epoch

    def write_state(
        self,
        conn: sa.Connection,
        pipeline: str,
        state: AppliedState,
        exists: bool,
        truncates: Mapping[str, Position] | None = None,
    ) -> None:
        """Store ``state``; with ``truncates``, the new fences too (every table's, not only new ones)."""
        values = self.state_values(state, truncates)
        columns = tuple(values)
        write = self._statements.get(("write", exists, columns))
        if write is None:
            write = self._statements["write", exists, columns] = self.write_statement(exists, columns)
        conn.execute(write, {"pipeline_key": pipeline, **values})

    def state_values(
        self, state: AppliedState, truncates: Mapping[str, Position] | None = None
    ) -> dict[str, object]:
        """The positions row's columns that store ``state`` (and the truncate fences, if given)."""
        values: dict[str, object] = {
            "position": state.position.to_string(),
            "offsets": json.dumps(dict(sorted(state.offsets.items()))),
            "updated_at": _now(),
        }
        if truncates is not None:
            values["truncates"] = json.dumps({k: truncates[k].to_string() for k in sorted(truncates)})
        return values

    def write_statement(self, exists: bool, columns: tuple[str, ...]) -> sa.Insert | sa.Update:
        """The write of ``columns`` (parameters named as they are) to the row of parameter
        ``pipeline_key``: an UPDATE, or the row's INSERT."""
        p = self.positions
        values: dict[str, sa.BindParameter[Any]] = {c: sa.bindparam(c) for c in columns}
        if exists:
            return p.update().where(p.c.pipeline == sa.bindparam("pipeline_key")).values(values)
        return p.insert().values({"pipeline": sa.bindparam("pipeline_key"), **values})

    def read_shapes(self, conn: sa.Connection) -> dict[str, TableShape]:
        rows = conn.execute(sa.select(self.tables.c.target_table, self.tables.c.shape))
        return {row.target_table: TableShape.from_json(row.shape) for row in rows}

    def write_shape(self, conn: sa.Connection, target: str, shape: TableShape, exists: bool) -> None:
        if exists:
            conn.execute(
                self.tables.update().where(self.tables.c.target_table == target), {"shape": shape.to_json()}
            )
        else:
            conn.execute(self.tables.insert(), {"target_table": target, "shape": shape.to_json()})

    # -- schema changes held back under `schema_changes: stop` --------------------------------------

    def read_schema_changes(self, conn: sa.Connection) -> list[tuple[PendingSchemaChange, str, bool]]:
        """Every recorded change: (the change, its target table, accepted)."""
        c = self.schema_changes.c
        rows = conn.execute(sa.select(self.schema_changes).order_by(c.position)).all()
        out = []
        for row in rows:
            db, _, table = row.source_table.partition(".")
            change = PendingSchemaChange(
                TableRef(db, table),
                row.from_version,
                row.to_version,
                row.change,
                Position.parse(row.position),
            )
            out.append((change, row.target_table, bool(row.accepted)))
        return out

    def record_schema_change(self, conn: sa.Connection, target: str, change: PendingSchemaChange) -> None:
        c = self.schema_changes.c
        found = conn.execute(
            sa.select(c.accepted).where(c.target_table == target, c.to_version == change.to_version)
        ).first()
        if found is not None:
            return
        conn.execute(
            self.schema_changes.insert(),
            {
                "target_table": target,
                "to_version": change.to_version,
                "source_table": str(change.table),
                "from_version": change.from_version,
                "change": change.change,
                "position": change.position.to_string(),
                "accepted": False,
                "recorded_at": _now(),
            },
        )

    def accept_schema_changes(self, conn: sa.Connection, target: str) -> int:
        c = self.schema_changes.c
        result = conn.execute(
            self.schema_changes.update().where(c.target_table == target, c.accepted.is_(False)),
            {"accepted": True},
        )
        return int(result.rowcount)

    def is_accepted(self, conn: sa.Connection, target: str, to_version: str) -> bool:
        c = self.schema_changes.c
        row = conn.execute(
            sa.select(c.accepted).where(c.target_table == target, c.to_version == to_version)
        ).first()
        return row is not None and bool(row.accepted)

    def forget_schema_change(self, conn: sa.Connection, target: str, to_version: str) -> None:
        c = self.schema_changes.c
        conn.execute(self.schema_changes.delete().where(c.target_table == target, c.to_version == to_version))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)
