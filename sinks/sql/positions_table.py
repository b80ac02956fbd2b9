"""The sink's own tables: applied positions (per pipeline) and the known shape of each target table.

``_headwater_positions`` is written in the same transaction as the rows it covers, which is what makes
a serving database exactly-once: after a crash either the rows and the position are there, or neither.
``_headwater_tables`` remembers, per target table, the source columns it was built from and every
schema version already followed, so that a new sink object (after a restart) compares an incoming
schema against the table as it really is.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import sqlalchemy as sa

from cdc.core.positions import Position
from cdc.core.schemas import ArrowKind, ArrowType, Column
from sinks.contract import AppliedState

__all__ = ["Bookkeeping", "TableShape"]

POSITIONS_TABLE = "_headwater_positions"
TABLES_TABLE = "_headwater_tables"
DEAD_LETTERS_TABLE = "_headwater_dead_letters"


@dataclass(frozen=True, slots=True)
class TableShape:
    """A target table as the sink built it: source columns, key, and the schema versions followed."""

    source: str  # "db.table"
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    versions: tuple[str, ...]  # every source schema version whose rows this table can take

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    def to_json(self) -> str:
        return json.dumps(
            {
                "source": self.source,
                "columns": [
                    [c.name, c.source_type, c.arrow_type.kind.value, c.arrow_type.precision,
                     c.arrow_type.scale, c.nullable]
                    for c in self.columns
                ],
                "primary_key": list(self.primary_key),
                "versions": list(self.versions),
            }
        )  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> TableShape:
        raw = json.loads(text)
        columns = tuple(
            Column(name, source_type, ArrowType(ArrowKind(kind), precision, scale), nullable)
            for name, source_type, kind, precision, scale, nullable in raw["columns"]
        )
        return cls(raw["source"], columns, tuple(raw["primary_key"]), tuple(raw["versions"]))


class Bookkeeping:
    """Table definitions and reads/writes of the sink's own tables (in ``schema`` when one is set)."""

    def __init__(self, schema: str | None) -> None:
        self.metadata = sa.MetaData(schema=schema)
        self.positions = sa.Table(
            POSITIONS_TABLE,
            self.metadata,
            sa.Column("pipeline", sa.String(200), primary_key=True),
            sa.Column("position", sa.String(255), nullable=False),
            sa.Column("offsets", sa.Text, nullable=False),  # JSON {"topic:partition": next offset}
            sa.Column("updated_at", sa.DateTime, nullable=False),
        )
        self.tables = sa.Table(
            TABLES_TABLE,
            self.metadata,
            sa.Column("target_table", sa.String(200), primary_key=True),
            sa.Column("shape", sa.Text, nullable=False),  # TableShape JSON
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

    def create(self, conn: sa.Connection) -> None:
        self.metadata.create_all(conn, checkfirst=True)

    def read_state(self, conn: sa.Connection, pipeline: str, lock: bool = False) -> AppliedState | None:
        query = sa.select(self.positions.c.position, self.positions.c.offsets).where(
            self.positions.c.pipeline == pipeline
        )
        if lock:
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            return None
        offsets = {str(k): int(v) for k, v in json.loads(row.offsets).items()}
        return AppliedState(Position.parse(row.position), offsets)

    def write_state(self, conn: sa.Connection, pipeline: str, state: AppliedState, exists: bool) -> None:
        values = {
            "position": state.position.to_string(),
            "offsets": json.dumps(dict(sorted(state.offsets.items()))),
            "updated_at": _now(),
        }
        if exists:
            conn.execute(self.positions.update().where(self.positions.c.pipeline == pipeline), values)
        else:
            conn.execute(self.positions.insert(), {"pipeline": pipeline, **values})

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


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)
