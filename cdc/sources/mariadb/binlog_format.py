"""Constants and small readers of the MariaDB binlog wire format (event header, length-coded ints).

References: MariaDB KB "Binlog Event Header", "Table_map_log_event", "Rows_log_event", and
sql/log_event.h. Only what the source needs is named here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["EventHeader", "EventType", "FieldType", "query_text", "read_lenenc"]

HEADER_LEN = 19
_HEADER = struct.Struct("<IBIIIH")


class EventType:
    QUERY = 2
    STOP = 3
    ROTATE = 4
    FORMAT_DESCRIPTION = 15
    XID = 16
    TABLE_MAP = 19
    WRITE_ROWS_V1 = 23
    UPDATE_ROWS_V1 = 24
    DELETE_ROWS_V1 = 25
    HEARTBEAT = 27
    WRITE_ROWS_V2 = 30
    UPDATE_ROWS_V2 = 31
    DELETE_ROWS_V2 = 32
    ANNOTATE_ROWS = 160
    BINLOG_CHECKPOINT = 161
    GTID = 162
    GTID_LIST = 163
    START_ENCRYPTION = 164
    QUERY_COMPRESSED = 165
    WRITE_ROWS_COMPRESSED_V1 = 169
    UPDATE_ROWS_COMPRESSED_V1 = 170
    DELETE_ROWS_COMPRESSED_V1 = 171
    ROWS_V1 = frozenset({WRITE_ROWS_V1, UPDATE_ROWS_V1, DELETE_ROWS_V1})
    ROWS_V2 = frozenset({WRITE_ROWS_V2, UPDATE_ROWS_V2, DELETE_ROWS_V2})
    ROWS_COMPRESSED = frozenset(
        {WRITE_ROWS_COMPRESSED_V1, UPDATE_ROWS_COMPRESSED_V1, DELETE_ROWS_COMPRESSED_V1}
    )
    WRITES = frozenset({WRITE_ROWS_V1, WRITE_ROWS_V2})
    UPDATES = frozenset({UPDATE_ROWS_V1, UPDATE_ROWS_V2})
    DELETES = frozenset({DELETE_ROWS_V1, DELETE_ROWS_V2})


class FieldType:
    DECIMAL = 0
    TINY = 1
    SHORT = 2
    LONG = 3
    FLOAT = 4
    DOUBLE = 5
    NULL = 6
    TIMESTAMP = 7
    LONGLONG = 8
    INT24 = 9
    DATE = 10
    TIME = 11
    DATETIME = 12
    YEAR = 13
    NEWDATE = 14
    VARCHAR = 15
    BIT = 16
    TIMESTAMP2 = 17
    DATETIME2 = 18
    TIME2 = 19
    BLOB_COMPRESSED = 140
    VARCHAR_COMPRESSED = 141
    JSON = 245
    NEWDECIMAL = 246
    ENUM = 247
    SET = 248
    TINY_BLOB = 249
    MEDIUM_BLOB = 250
    LONG_BLOB = 251
    BLOB = 252
    VAR_STRING = 253
    STRING = 254
    GEOMETRY = 255


@dataclass(frozen=True, slots=True)
class EventHeader:
    timestamp: int
    type_code: int
    server_id: int
    event_size: int
    log_pos: int  # offset of the *next* event in the binlog file (0 for artificial events)
    flags: int

    @classmethod
    def parse(cls, data: bytes, offset: int) -> EventHeader:
        return cls(*_HEADER.unpack_from(data, offset))

    @property
    def start(self) -> int:
        """Offset of this event in its binlog file."""
        return self.log_pos - self.event_size


def read_lenenc(data: bytes, pos: int) -> tuple[int, int]:
    """A length-coded integer at ``pos``: (value, position after it)."""
    first = data[pos]
    if first < 251:
        return first, pos + 1
    if first == 252:
        return int.from_bytes(data[pos + 1 : pos + 3], "little"), pos + 3
    if first == 253:
        return int.from_bytes(data[pos + 1 : pos + 4], "little"), pos + 4
    if first == 254:
        return int.from_bytes(data[pos + 1 : pos + 9], "little"), pos + 9
    raise ValueError(f"invalid length-coded integer prefix {first:#x} at {pos}")


def query_text(ev: bytes, post_header: int = 13) -> tuple[str, str, int]:
    """(statement, default database, connection id) of a QUERY (or EXECUTE_LOAD_QUERY) event."""
    p = HEADER_LEN
    thread_id = int.from_bytes(ev[p : p + 4], "little")
    db_len = ev[p + 8]
    status_len = int.from_bytes(ev[p + 11 : p + 13], "little")
    p += post_header + status_len
    db = ev[p : p + db_len].decode("utf-8", "surrogateescape")
    p += db_len + 1
    return ev[p:].decode("utf-8", "surrogateescape"), db, thread_id
