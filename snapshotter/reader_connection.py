"""The snapshot reader's connection: mysqlclient (C) with the session a consistent, exact read needs,
and the translation of its errors into Headwater's."""

from __future__ import annotations

from typing import Any

import MySQLdb
import MySQLdb.converters

from cdc.core.errors import HeadwaterError, SourceSettingsError, SourceUnavailable, TerminalError
from cdc.sources.mariadb.connection import connect
from cdc.sources.mariadb.connection_settings import ConnectionSettings
from cdc.sources.mariadb.source_errors import translate
from snapshotter.values import FieldConversions

__all__ = ["SnapshotReadError", "connect_for_snapshot", "text", "translate_error"]


class SnapshotReadError(TerminalError):
    """A server error no retry is known to fix, met while reading a snapshot; carries its message."""


def connect_for_snapshot(settings: ConnectionSettings, fields: FieldConversions) -> Any:
    # the encoders (Python type -> SQL literal) stay mysqlclient's; the decoders are ours alone
    conv = {k: v for k, v in MySQLdb.converters.conversions.items() if not isinstance(k, int)}
    conv.update(fields.converters)
    options: dict[str, Any] = {}
    if settings.tls is not None:
        tls = settings.tls
        # libmariadb verifies against a given CA whatever ssl_mode says: without verification the CA
        # is left out (source.ssl.verify: false encrypts only, as the binlog connection does)
        files = (("ca", tls.ca if tls.verify else None), ("cert", tls.cert), ("key", tls.key))
        options["ssl"] = {k: str(v) for k, v in files if v is not None}
        options["ssl_mode"] = "VERIFY_IDENTITY" if tls.verify else "REQUIRED"
    try:
        conn: Any = MySQLdb.connect(
            host=settings.host,
            port=settings.port,
            user=settings.user,
            password=settings.password,
            connect_timeout=max(1, int(settings.connect_timeout_s)),
            conv=conv,
            charset="utf8mb4",
            use_unicode=False,
            autocommit=True,
            **options,
        )
    except MySQLdb.Error as exc:
        # The binlog source's connect (pymysql) sees the server's handshake and the TLS error itself,
        # so it judges a refused login or a failed verification best, and in the same words
        try:
            connect(settings).close()
        except HeadwaterError as judged:
            raise judged from exc
        raise translate_error(exc, settings, "connecting for a snapshot") from exc
    plain = False
    with conn.cursor() as cur:
        if settings.tls is not None:
            # libmariadb may settle for a plain connection when the server offers no TLS
            cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            row = cur.fetchone()
            plain = not row or not row[1]
        # Raw stored bytes for every value (decoded here with the decoder's codecs); TIMESTAMP in UTC;
        # no sql_mode that changes what SELECT prints (PAD_CHAR_TO_FULL_LENGTH) or how literals are
        # escaped (NO_BACKSLASH_ESCAPES); a chunk the caller is slow to consume is not cut off.
        cur.execute(
            "SET SESSION character_set_results = NULL, time_zone = '+00:00', sql_mode = '',"
            " tx_isolation = 'REPEATABLE-READ', net_write_timeout = 3600, max_statement_time = 0"
        )
    if plain:
        conn.close()
        raise SourceSettingsError(
            f"{settings.describe()}: source.ssl is set but the server offers no TLS; configure ssl_cert "
            "and ssl_key on the server, or remove source.ssl"
        )
    return conn


def translate_error(exc: Exception, settings: ConnectionSettings, doing: str) -> HeadwaterError:
    error = translate(exc, settings, doing)  # type: ignore[arg-type]  # judges by (code, message) only
    if error is not None:
        return error
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
    said = f"{exc.args[-1] if exc.args else exc}"
    if code == 0 or 2000 <= code < 3000:  # the client library's own errors: the connection broke
        return SourceUnavailable(f"{settings.address} {doing}: {said}")
    return SnapshotReadError(f"{settings.describe()} {doing}: MariaDB error {code}: {said}")


def text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
