"""A replica connection to MariaDB that yields raw binlog events (bytes), nothing decoded.

pymysql does the handshake and authentication; after COM_BINLOG_DUMP we read protocol packets
ourselves, because building pymysql's packet objects per event costs more than decoding the event.
Every connection to the source (control queries and the dump) is made by :func:`connect`, so TLS
(``source.ssl``) and the judgement of errors (source_errors.py) apply to all of them alike.
"""

from __future__ import annotations

import contextlib
import io
import logging
import select
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pymysql
import pymysql.cursors
from headwater_native import split_packets
from pymysql.constants import CLIENT
from pymysql.constants.CR import CR_SERVER_LOST

from cdc.core.errors import BinlogPurged, SourceProtocolError, SourceUnavailable
from cdc.sources.mariadb.connection_settings import ConnectionSettings, TlsSettings
from cdc.sources.mariadb.dump_command import (
    BINLOG_DUMP_NON_BLOCK,
    mariadb_binlog_dump,
)
from cdc.sources.mariadb.source_errors import error_code, server_id_clash, translate

__all__ = ["BinlogConnection", "ConnectionSettings", "DumpStart", "TlsSettings", "connect", "control"]

log = logging.getLogger(__name__)

_MAX_PACKET = 0xFFFFFF


class _CountingSocketIO(socket.SocketIO):
    """What ``socket.makefile("rb")`` reads through, counting the bytes received.

    The bytes received less the bytes the dump's reader consumed are the stream already waiting in
    the buffer, so ``input_ready`` asks the kernel only when that is none. It was asked after every
    transaction (the reading thread cuts a chunk where nothing more waits): with single-row
    transactions that was one select() per transaction, each releasing the GIL and waiting for the
    busy writer thread to hand it back (2.1 of the reading thread's 5.8 s in a 20k-transaction
    capture's profile), while the data sat in the 1 MiB buffer."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock, "rb")
        sock._io_refs += 1  # type: ignore[attr-defined]  # as makefile() counts its file objects
        self.received = 0

    def readinto(self, b: Any) -> int | None:
        n = super().readinto(b)
        if n:
            self.received += n
        return n


# The dump's socket reads: each releases the GIL, and taking it back from the capture daemon's busy
# writer thread waits up to the switch interval (5 ms). pymysql's 8 KiB buffer meant one such wait
# per 8 KiB of binlog (85 of the reading thread's 187 s in the bulk capture profile); a read now
# takes whatever the kernel holds, up to this much.
_DUMP_READ_BUFFER = 1 << 20
_ER_MASTER_FATAL_READING_BINLOG = 1236  # purged/missing binlog or GTID: terminal
_ER_SLAVE_SAME_ID = 4052
# Error 1236 also covers non-purge failures (bad GTID state, duplicate server id): only these are purges.
_PURGED_MESSAGES = (
    "could not find first log",
    "not in the master's binlog",
    "purged",
    "missing",
    "could not open log",
    "could not find gtid",
)
_SAME_ID_MESSAGES = ("same server_uuid/server_id", "same server_id")

if TYPE_CHECKING:
    Connection = pymysql.Connection[pymysql.cursors.Cursor]


def _lost(conn: Connection, exc: OSError | None) -> pymysql.OperationalError:
    """What pymysql's ``_read_bytes`` raises for a failed or short read, after closing the socket."""
    conn._force_close()  # type: ignore[attr-defined]
    detail = f" ({exc})" if exc is not None else ""
    return pymysql.OperationalError(CR_SERVER_LOST, f"Lost connection to MySQL server during query{detail}")


@dataclass(frozen=True, slots=True)
class DumpStart:
    """Where the server starts sending: a GTID connect state, or binlog coordinates."""

    gtid_state: str | None = None  # MariaDB semantics: send what comes *after* these GTIDs
    file: str = ""
    offset: int = 4

    def describe(self) -> str:
        if self.gtid_state is not None:
            return f"gtid state {self.gtid_state!r}"
        return f"{self.file}:{self.offset}"


def connect(settings: ConnectionSettings, read_timeout: float | None = None) -> Connection:
    """An ordinary (autocommit) connection to the source, over TLS when ``settings.tls`` says so.

    A refused login, a failed TLS verification and the like are terminal (SourceAccessDenied, naming
    the source and the fix); a network problem is transient (SourceUnavailable).
    """
    s = settings
    conn: Connection = pymysql.Connection(
        host=s.host,
        port=s.port,
        user=s.user,
        password=s.password,
        connect_timeout=s.connect_timeout_s,
        read_timeout=read_timeout,
        autocommit=True,
        # Without source.ssl, plain TCP as documented (pymysql would otherwise try TLS without
        # verifying anything, which only looks secure).
        ssl=s.tls.context() if s.tls else None,
        ssl_disabled=s.tls is None,
        defer_connect=True,  # keeps the object, and the server's handshake, when the login fails
    )
    try:
        conn.connect()
    except pymysql.MySQLError as exc:
        offers_tls = bool(getattr(conn, "server_capabilities", 0) & CLIENT.SSL)
        error = translate(exc, s, "while connecting", offers_tls=offers_tls)
        raise (error or SourceUnavailable(f"cannot connect to {s.address}: {exc.args[-1]}")) from exc
    return conn


def current_account(cur: pymysql.cursors.Cursor) -> str | None:
    """The account the server matched us to, quoted for a GRANT ('cdc'@'127.0.0.1')."""
    try:
        cur.execute("SELECT CURRENT_USER()")
        row = cur.fetchone()
    except pymysql.MySQLError:
        return None
    if not row or "@" not in str(row[0]):
        return None
    user, host = str(row[0]).rsplit("@", 1)
    return f"'{user}'@'{host}'"


@contextmanager
def control(
    settings: ConnectionSettings, doing: str, read_timeout: float | None = None
) -> Iterator[pymysql.cursors.Cursor]:
    """A cursor on a fresh connection; server errors while ``doing`` are judged as :func:`connect`'s."""
    conn = connect(settings, read_timeout)
    try:
        with conn.cursor() as cur:
            try:
                yield cur
            except pymysql.MySQLError as exc:
                account = current_account(cur) if error_code(exc) in (1044, 1142, 1143, 1227) else None
                error = translate(exc, settings, doing, account=account)
                if error is None:
                    raise
                raise error from exc
    finally:
        conn.close()


class BinlogConnection:
    """One COM_BINLOG_DUMP session. Iterate :meth:`events` to get raw event bytes (header included,
    checksum removed)."""

    def __init__(
        self,
        settings: ConnectionSettings,
        replica_server_id: int,
        *,
        blocking: bool,
        heartbeat_s: float | None = None,
    ) -> None:
        self._settings = settings
        self._server_id = replica_server_id
        self._blocking = blocking
        self._heartbeat_s = heartbeat_s
        self._conn: Any = None  # pymysql.Connection; its private I/O methods are untyped
        self._account: str | None = None
        self._raw: _CountingSocketIO | None = None  # the dump's socket reads, counted
        self._consumed = 0  # bytes of the dump the reader has taken from the buffer
        self.checksum_len = 0

    def query_one(self, sql: str) -> tuple[object, ...] | None:
        with control(self._settings, f"running {sql}") as cur:
            cur.execute(sql)
            row = cur.fetchone()
            return tuple(row) if row is not None else None

    def _connect_plain(self) -> Any:
        # With heartbeats the server writes at least every heartbeat_s; silence for three periods means
        # a dead peer (surfaced as SourceUnavailable) rather than a read that blocks forever.
        read_timeout = self._heartbeat_s * 3 if self._heartbeat_s else None
        return connect(self._settings, read_timeout)

    def open(self, start: DumpStart) -> None:
        conn = self._connect_plain()
        try:
            checksum = self._prepare_session(conn, start)
        except pymysql.MySQLError as exc:
            conn.close()
            error = translate(exc, self._settings, "preparing the binlog dump")
            if error is None:
                raise
            raise error from exc
        self.checksum_len = 4 if checksum.upper() == "CRC32" else 0
        flags = 0 if self._blocking else BINLOG_DUMP_NON_BLOCK
        if start.gtid_state is not None:
            packet = mariadb_binlog_dump(self._server_id, flags)
        else:
            packet = mariadb_binlog_dump(self._server_id, flags, start.file, start.offset)
        # Replaced before the dump command is sent: every reply of the session set-up has been read
        # in full, so the old buffer holds nothing of the stream.
        raw = _CountingSocketIO(conn._sock)
        old_rfile, conn._rfile = conn._rfile, io.BufferedReader(raw, _DUMP_READ_BUFFER)
        old_rfile.close()  # closes only the file object: the socket stays open
        self._raw, self._consumed = raw, 0
        conn._write_bytes(packet)
        conn._next_seq_id = 1
        self._conn = conn
        log.info("binlog dump started at %s as replica server_id %d", start.describe(), self._server_id)

    def _prepare_session(self, conn: Connection, start: DumpStart) -> str:
        """The replica session variables the dump needs; returns the server's binlog checksum."""
        with conn.cursor() as cur:
            # Named in a missing-grant error; the dump itself can no longer answer queries.
            self._account = current_account(cur)
            cur.execute("SELECT @@global.binlog_checksum")
            row = cur.fetchone()
            checksum = str(row[0]) if row else "NONE"
            # Announcing that we understand checksums; otherwise the server refuses to send them.
            cur.execute("SET @master_binlog_checksum = @@global.binlog_checksum")
            # 4 = MARIA_SLAVE_CAPABILITY_GTID: we understand GTID events (and want them).
            cur.execute("SET @mariadb_slave_capability = 4")
            if self._heartbeat_s:
                cur.execute("SET @master_heartbeat_period = %s", (int(self._heartbeat_s * 1e9),))
            if start.gtid_state is not None:
                cur.execute("SET @slave_connect_state = %s", (start.gtid_state,))
                cur.execute("SET @slave_gtid_strict_mode = 1")
                cur.execute("SET @slave_gtid_ignore_duplicates = 0")
        return checksum

    def close(self) -> None:
        # Called from the reading thread's cleanup and from a stopping daemon's thread alike: the
        # second close of a pymysql connection raises "Already closed", which must not mask why we stop.
        conn, self._conn = self._conn, None
        if conn is not None:
            # shut the socket down first: a reading thread blocked on it returns at once, instead of
            # the close waiting for its read (measured: 3.2 s of every daemon stop, 0 with this)
            sock = getattr(conn, "_sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(pymysql.Error):
                conn.close()

    def input_ready(self) -> bool:
        """More of the stream is waiting in the socket (the next read will not block on the server);
        False when unknown. Lets the reading thread batch transactions while it is behind."""
        sock = getattr(self._conn, "_sock", None)
        if sock is None:
            return False
        raw = self._raw
        if raw is not None and raw.received > self._consumed:
            # already read from the socket: asking the kernel (select, which releases the GIL) once
            # per transaction cost single-row transactions a GIL hand-over each (see _CountingSocketIO)
            return True
        try:
            return bool(select.select((sock,), (), (), 0)[0])
        except (OSError, ValueError):  # closed meanwhile
            return False

    def events(self) -> Iterator[bytes]:
        """Raw events until the server says the stream ended (non-blocking) or forever (blocking)."""
        conn = self._conn
        if conn is None:
            raise RuntimeError("open() first")
        # Sending the dump command left the socket at the write timeout (none); reading the stream
        # directly with _read_bytes must put the heartbeat-based read timeout back itself.
        conn._sock.settimeout(conn._read_timeout)
        conn._current_timeout = conn._read_timeout
        # The buffered file itself, not pymysql's _read_bytes around it: two Python calls per packet
        # were a fifth of the reading thread's time on single-row transactions. A failed or short
        # read becomes the error _read_bytes raises (_lost), judged the same way below.
        read = conn._rfile.read
        unpack = struct.Struct("<HBB").unpack
        cut = self.checksum_len
        try:
            while True:
                try:
                    head = read(4)
                    low, high, _seq = unpack(head)
                    size = low | high << 16
                    data = read(size)
                    if len(data) != size:
                        raise _lost(conn, None)
                    self._consumed += 4 + size
                    while size == _MAX_PACKET:  # an event larger than one protocol packet continues
                        low, high, _seq = unpack(read(4))
                        size = low | high << 16
                        more = read(size)
                        if len(more) != size:
                            raise _lost(conn, None)
                        data += more
                        self._consumed += 4 + size
                except struct.error:
                    raise _lost(conn, None) from None  # the stream ended inside a packet header
                except OSError as exc:
                    raise _lost(conn, exc) from exc
                status = data[0]
                if status == 0x00:
                    yield data[1 : len(data) - cut] if cut else data[1:]
                elif status == 0xFE and len(data) < 9:
                    return
                elif status == 0xFF:
                    self._raise_server_error(data)
                else:
                    raise SourceProtocolError(f"unexpected packet status {status:#x} in binlog stream")
        except pymysql.MySQLError as exc:
            error = translate(exc, self._settings, "reading the binlog")
            if error is None:
                raise
            raise error from exc

    def event_batches(self) -> Iterator[list[bytes]]:
        """The events of :meth:`events`, in lists: every complete event already in the read buffer,
        cut out in one compiled call (caploop: the per-packet Python was ~1 us an event, 5 a
        single-row transaction). Whatever that call leaves (a packet not all received yet, the end
        of the stream, an error, an event over one packet) is read by :meth:`events`, one at a time."""
        conn = self._conn
        if conn is None:
            raise RuntimeError("open() first")
        single = self.events()  # sets the read timeout on its first event
        first = next(single, None)
        if first is None:
            return
        yield [first]
        peek, read, cut = conn._rfile.peek, conn._rfile.read, self.checksum_len
        while True:
            try:
                data = peek(1)  # the buffered bytes, or one read from the socket when there are none
            except OSError as exc:
                lost = _lost(conn, exc)
                raise (translate(lost, self._settings, "reading the binlog") or lost) from exc
            events, used = split_packets(data, cut) if data else ([], 0)
            if used:
                read(used)
                self._consumed += used
                yield events
                continue
            event = next(single, None)
            if event is None:
                return
            yield [event]

    def _raise_server_error(self, data: bytes) -> None:
        code = int.from_bytes(data[1:3], "little")
        text = data[9:] if data[3:4] == b"#" else data[3:]  # skip the SQL state marker and state
        message = text.decode("utf-8", "replace")
        lowered = message.lower()
        if code == _ER_MASTER_FATAL_READING_BINLOG and any(m in lowered for m in _PURGED_MESSAGES):
            raise BinlogPurged("requested start", message)
        if code == _ER_SLAVE_SAME_ID or any(m in lowered for m in _SAME_ID_MESSAGES):
            # The server keeps the newest dump per server_id: this reader lost (issue 8, item 15).
            raise server_id_clash(self._settings, self._server_id, message)
        error = translate(
            pymysql.OperationalError(code, message), self._settings, "the binlog dump", account=self._account
        )
        raise error or SourceProtocolError(f"server error {code} in binlog stream: {message}")
