"""The errors the stream decoder raises for changes it must not skip, each naming table, position and fix."""

from __future__ import annotations

from cdc.core.errors import SourceSettingsError
from cdc.core.positions import Position
from cdc.core.schemas import TableRef, TableSchema

__all__ = ["partial_image", "statement_logged", "where"]


def where(tx_pos: Position) -> str:
    return f"{tx_pos.gtid} at {tx_pos.file}:{tx_pos.offset}"


def partial_image(schema: TableSchema, tx_pos: Position, at: int) -> SourceSettingsError:
    return SourceSettingsError(
        f"{schema.ref}: the row event at {tx_pos.file}:{at} (GTID {tx_pos.gtid}) carries a partial row "
        "image: the session that wrote it ran with binlog_row_image=MINIMAL or NOBLOB, so the "
        "change cannot be captured whole. Set binlog_row_image=FULL on the server and let no session "
        "or client override it; this change is not in the binlog in full, so copy the table again "
        "(bootstrap it) once the setting is fixed"
    )


def statement_logged(ref: TableRef, query: str, tx_pos: Position, at: int) -> SourceSettingsError:
    verb = query.lstrip().split(None, 1)[0].upper() if query.strip() else "?"
    article = "an" if verb[:1] in "AEIOU" else "a"
    return SourceSettingsError(
        f"{ref}: {article} {verb} statement at {tx_pos.file}:{at} (GTID {tx_pos.gtid}) was logged as a "
        "statement (its session ran with binlog_format=STATEMENT or MIXED), so its row changes are "
        "not in the binlog. Set binlog_format=ROW on the server and let no session or client "
        "override it; this change cannot be read back, so copy the table again (bootstrap it) once "
        "the setting is fixed"
    )
