"""COM_BINLOG_DUMP for MariaDB, and python-mysql-replication's reader with its MariaDB framing bug fixed.

python-mysql-replication 1.0.17 frames MariaDB's COM_BINLOG_DUMP with a length header of 14 for a
15-byte payload (command byte 1 + position 4 + flags 2 + server id 4 + empty file name 4). The server
reads a 14-byte command and is left with a stray byte in its socket; the connection is later reset,
and the library, seeing "lost connection", reconnects from the same GTID state forever. In
non-blocking reads the caller never sees the end of the stream (and sees its tail over and over).

We frame the packet from its real length. :class:`FixedBinLogStreamReader` applies the same fix to the
library's reader (used where we still want the library's decoder: differential tests, benchmarks).
"""

from __future__ import annotations

import struct
from typing import Any

from pymysqlreplication import BinLogStreamReader

__all__ = [
    "BINLOG_DUMP_NON_BLOCK",
    "BINLOG_SEND_ANNOTATE_ROWS_EVENT",
    "FixedBinLogStreamReader",
    "frame_packet",
    "mariadb_binlog_dump",
]

COM_BINLOG_DUMP = 0x12
BINLOG_DUMP_NON_BLOCK = 0x01
BINLOG_SEND_ANNOTATE_ROWS_EVENT = 0x02


def frame_packet(payload: bytes, sequence_id: int = 0) -> bytes:
    """A MySQL protocol packet: 3-byte little-endian payload length, sequence id, payload."""
    if len(payload) >= 0xFFFFFF:
        raise ValueError("payload too large for a single protocol packet")
    return struct.pack("<I", len(payload))[:3] + bytes((sequence_id,)) + payload


def mariadb_binlog_dump(server_id: int, flags: int, log_file: str = "", log_pos: int = 4) -> bytes:
    """The framed COM_BINLOG_DUMP packet.

    In GTID mode (``@slave_connect_state`` set on the session) MariaDB ignores file and position, and
    the file name is sent empty; otherwise the dump starts at ``log_file``/``log_pos``.
    """
    payload = struct.pack("<BIHI", COM_BINLOG_DUMP, log_pos, flags, server_id) + log_file.encode()
    if not log_file:
        payload += b"\0\0\0\0"  # what the library sends as the empty name; the server accepts it
    return frame_packet(payload)


class FixedBinLogStreamReader(BinLogStreamReader):  # type: ignore[misc]
    """python-mysql-replication's reader with the MariaDB dump packet framed from its real length."""

    # The library's method is name-mangled (``__set_mariadb_settings``); overriding the mangled name is
    # the only hook. We keep its session settings (GTID connect state, strict mode) and re-frame the
    # packet it built.
    def _BinLogStreamReader__set_mariadb_settings(self) -> bytes:
        original: bytes = BinLogStreamReader._BinLogStreamReader__set_mariadb_settings(self)
        return frame_packet(original[4:])

    def fetchone(self) -> Any:
        return super().fetchone()
