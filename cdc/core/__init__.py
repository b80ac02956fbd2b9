"""Headwater's shared vocabulary: positions, table schemas, change events and errors.

Imports nothing else of ours and no heavy dependency, so every layer can depend on it cheaply.
"""

from cdc.core.errors import (
    BinlogPurged,
    ConfigError,
    HeadwaterError,
    PositionFormatError,
    SourceProtocolError,
    SourceUnavailable,
    TerminalError,
    TransientError,
    UnsupportedColumnType,
    ZeroDateError,
)
from cdc.core.events import (
    ChangeEvent,
    ColumnValue,
    Op,
    RowImage,
    SchemaChange,
    SchemaChangeKind,
    SourceRecord,
    TransactionEnd,
)
from cdc.core.positions import Gtid, Position, RestartPoint
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema

__all__ = [
    "ArrowKind",
    "ArrowType",
    "BinlogPurged",
    "ChangeEvent",
    "Column",
    "ColumnValue",
    "ConfigError",
    "Gtid",
    "HeadwaterError",
    "Op",
    "Position",
    "PositionFormatError",
    "RestartPoint",
    "RowImage",
    "SchemaChange",
    "SchemaChangeKind",
    "SourceProtocolError",
    "SourceRecord",
    "SourceUnavailable",
    "TableRef",
    "TableSchema",
    "TerminalError",
    "TransactionEnd",
    "TransientError",
    "UnsupportedColumnType",
    "ZeroDateError",
]
