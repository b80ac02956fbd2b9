"""Rows the target cannot store, kept (``on_bad_row: dead_letter``) instead of stopping the pipeline.

A dead letter holds everything needed to repair the row by hand or replay it once the cause is fixed:
the source table, the key and the row image as JSON (values tagged where JSON has no exact type),
the position, the column and the reason. It is written in the same transaction as the batch.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import sqlalchemy as sa

from cdc.core.events import ChangeEvent, ColumnValue, RowImage
from cdc.core.schemas import TableSchema
from sinks.sql.codec import Codec
from sinks.sql.positions_table import Bookkeeping
from sinks.sql.table_writer import TablePlan

__all__ = ["BadRow", "bad_rows", "json_value", "key_json", "write_dead_letters"]


@dataclass(frozen=True, slots=True)
class BadRow:
    event: ChangeEvent
    target_table: str
    key: RowImage
    column: str
    reason: str


def json_value(value: ColumnValue) -> object:
    """A JSON-safe, exact rendering: numbers that JSON would round and binary data are tagged strings."""
    if value is None or isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**53 else str(value)
    if isinstance(value, decimal.Decimal):
        return {"decimal": str(value)}
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dt.timedelta):
        return {"microseconds": (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds}
    return value.isoformat()  # date, datetime (with its offset when aware)


def key_json(key: RowImage) -> str:
    return json.dumps([json_value(v) for v in key], ensure_ascii=True)


def write_dead_letters(conn: sa.Connection, book: Bookkeeping, pipeline: str, rows: list[BadRow]) -> None:
    if not rows:
        return
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    values = []
    for bad in rows:
        event = bad.event
        image = event.after if event.after is not None else event.before
        payload = (
            {c.name: json_value(v) for c, v in zip(event.schema.columns, image, strict=True)}
            if image is not None
            else {}
        )
        values.append(
            {
                "pipeline": pipeline,
                "source_table": str(event.table),
                "target_table": bad.target_table,
                "op": event.op.value,
                "key": key_json(bad.key),
                "position": event.position.to_string(),
                "column_name": bad.column,
                "reason": bad.reason,
                # ensure_ascii: the payload may hold exactly what the target could not store (NUL)
                "payload": json.dumps(payload, ensure_ascii=True),
                "created_at": now,
            }
        )
    conn.execute(book.dead_letters.insert(), values)


def bad_rows(plans: Mapping[str, TablePlan], codec_of: Callable[[str, TableSchema], Codec]) -> list[BadRow]:
    """The rows of ``plans`` the target cannot store (a key or value its column type refuses)."""
    bad: list[BadRow] = []
    for plan in plans.values():
        codec: Codec | None = None
        version = ""
        for key, (image, event) in plan.actions.items():
            if codec is None or event.schema.version != version:
                codec, version = codec_of(plan.target, event.schema), event.schema.version
            if image is None:
                for n, check in codec.key_checks:
                    reason = check(key[n])
                    if reason is not None:
                        bad.append(BadRow(event, plan.target, key, codec.key_names[n], reason))
                        break
                continue
            for i, name, check in codec.checks:
                reason = check(image[i])
                if reason is not None:
                    bad.append(BadRow(event, plan.target, key, name, reason))
                    break
    return bad
