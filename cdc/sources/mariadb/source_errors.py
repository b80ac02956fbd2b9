"""Which MariaDB errors a retry can fix, and what the others tell the operator to do.

One small table, as Debezium's MariaDbErrorHandler: a network problem or a busy server is transient
(SourceUnavailable, retried with backoff); a refused login, a missing grant or database, a failed TLS
verification or a clashing replica server_id is terminal (SourceAccessDenied), naming the source
(address and user, never the password) and the fix. Anything not named here is left as it was raised.
"""

from __future__ import annotations

import re
import ssl

import pymysql

from cdc.core.errors import (
    HeadwaterError,
    SourceAccessDenied,
    SourceSettingsError,
    SourceUnavailable,
)
from cdc.sources.mariadb.connection_settings import ConnectionSettings

__all__ = [
    "CAPTURE_GRANTS",
    "error_code",
    "server_id_clash",
    "translate",
]

# What `cdc run` needs (cdc/devstack/mariadb.py grants the same, plus what snapshots need).
CAPTURE_GRANTS = "REPLICATION SLAVE, BINLOG MONITOR ON *.* and SELECT on the captured databases"

_NETWORK = frozenset(
    {
        2002,  # can't connect through socket
        2003,  # can't connect (refused, timeout, unreachable)
        2006,  # server has gone away
        2013,  # lost connection during query
        2055,  # lost connection (system error)
        1158,  # ER_NET_READ_ERROR
        1159,  # ER_NET_READ_INTERRUPTED
        1160,  # ER_NET_ERROR_ON_WRITE
        1161,  # ER_NET_WRITE_INTERRUPTED
    }
)
_BUSY = frozenset(
    {
        1040,  # ER_CON_COUNT_ERROR: too many connections
        1203,  # ER_TOO_MANY_USER_CONNECTIONS
        1226,  # ER_USER_LIMIT_REACHED (hourly limits reset)
        1053,  # ER_SERVER_SHUTDOWN: a restart is under way
        1927,  # ER_CONNECTION_KILLED: someone killed our thread; a new one may live
        1205,  # lock wait timeout
        1213,  # deadlock
    }
)
_LOGIN_REFUSED = frozenset({1045, 1698})  # wrong user or password; no password given
_HOST_REFUSED = frozenset({1130})  # the account does not exist for the client's host
_HOST_BLOCKED = 1129  # too many failed connects from this host
_PASSWORD_EXPIRED = frozenset({1820, 1862})
_ACCOUNT_LOCKED = 4151
_AUTH_PLUGIN = 1251  # the server asks for an authentication method the client lacks
_PRIVILEGE = 1227  # ER_SPECIFIC_ACCESS_DENIED_ERROR: "you need ... the X privilege(s)"
_DB_DENIED = 1044
_TABLE_DENIED = frozenset({1142, 1143})
_UNKNOWN_DB = 1049
_SERVER_ID_CLASH = 4052  # ER_SLAVE_SAME_ID
_TLS_UNAVAILABLE = 2026  # CR_SSL_CONNECTION_ERROR: TLS asked for, the server offers none

_CONNECT_FAILED = 2003  # pymysql wraps every OSError of the connect phase, TLS handshake included

_NEEDED = re.compile(r"you need \(at least one of\) the (.+?) privilege", re.IGNORECASE)


def error_code(exc: BaseException) -> int:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else 0


def _message(exc: BaseException) -> str:
    args = getattr(exc, "args", ())
    return str(args[-1]) if args else str(exc)


def server_id_clash(settings: ConnectionSettings, server_id: int, server_message: str) -> SourceAccessDenied:
    return SourceAccessDenied(
        f"{settings.describe()} dropped this binlog connection: another replica connected with the same "
        f"server_id {server_id} (MariaDB error {_SERVER_ID_CLASH}: {server_message}). Two pipelines, or a "
        "pipeline and a real replica, share source.server_id: give each pipeline its own "
        "source.server_id (unique among all replicas of this server); if this was the same pipeline "
        "started twice, stop the other copy"
    )


def _privilege_fix(settings: ConnectionSettings, server_message: str, account: str) -> str:
    """The one grant the server named (its message lists SUPER first, the narrow privilege last)."""
    found = _NEEDED.search(server_message)
    if found:
        privilege = found.group(1).split(",")[-1].strip()
        return f"GRANT {privilege} ON *.* TO {account}"
    return f"grant {account} {CAPTURE_GRANTS}"


def _tls_cause(exc: BaseException) -> ssl.SSLError | None:
    """pymysql wraps the handshake's OSError in OperationalError(2003); dig the TLS error out."""
    seen: BaseException | None = exc
    while seen is not None:
        original = getattr(seen, "original_exception", None)
        for candidate in (seen, original):
            if isinstance(candidate, ssl.SSLError) and not isinstance(
                candidate, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLWantReadError)
            ):
                return candidate
        seen = seen.__cause__ or seen.__context__
    return None


def _tls_error(settings: ConnectionSettings, cause: ssl.SSLError) -> HeadwaterError:
    where = settings.describe()
    if isinstance(cause, ssl.SSLCertVerificationError):
        ca = settings.tls.ca if settings.tls else None
        reason = getattr(cause, "verify_message", None) or cause  # set only by a real handshake
        return SourceAccessDenied(
            f"{where}: the server's TLS certificate failed verification ({reason}). "
            f"Check that source.ssl.ca ({ca or 'the system CA store'}) holds the CA that signed the "
            "server's certificate and that source.host is a name or address in that certificate "
            "(or set source.ssl.verify: false to encrypt without verifying)"
        )
    reason = getattr(cause, "reason", None) or cause
    return SourceAccessDenied(
        f"{where}: the TLS handshake failed ({reason}). If the server requires a client "
        "certificate (REQUIRE X509), set source.ssl.cert and source.ssl.key to one its ssl_ca trusts"
    )


def translate(
    exc: pymysql.MySQLError,
    settings: ConnectionSettings,
    doing: str,
    *,
    account: str | None = None,
    offers_tls: bool = False,
) -> HeadwaterError | None:
    """The Headwater error for a pymysql error met while ``doing`` something; None: not ours to judge.

    ``account`` is the server's name for us ('cdc'@'127.0.0.1') when known; ``offers_tls`` that the
    server advertised TLS in its handshake (a plain login it refuses may mean TLS is required).
    """
    code, text = error_code(exc), _message(exc)
    where = settings.describe()
    who = account or f"'{settings.user}'@'<client host>'"
    said = f"MariaDB error {code}: {text}"
    # Only at connect (2003): a TLS error on an established stream is a broken connection, transient.
    tls = _tls_cause(exc) if code == _CONNECT_FAILED else None
    if tls is not None:
        return _tls_error(settings, tls)
    if code in _NETWORK or code in _BUSY:
        return SourceUnavailable(f"{settings.address} {doing}: {text}")
    if code in _LOGIN_REFUSED:
        fix = "check source.user and source.password (and that the account exists for this client's host)"
        if offers_tls and settings.tls is None:
            fix += (
                "; the server offers TLS and this connection did not use it: if the server requires "
                "secure transport (require_secure_transport=ON, or an account with REQUIRE SSL), "
                "configure source.ssl"
            )
        return SourceAccessDenied(f"{where} refused the login ({said}); {fix}")
    if code in _HOST_REFUSED:
        return SourceAccessDenied(
            f"{where} refused the login ({said}); create the account for this client's host "
            "or connect from an allowed one"
        )
    if code == _HOST_BLOCKED:
        return SourceAccessDenied(
            f"{where} blocks this host after too many failed connects ({said}); fix the cause, then run "
            "`mariadb-admin flush-hosts` (or FLUSH HOSTS) on the server"
        )
    if code in _PASSWORD_EXPIRED or code == _ACCOUNT_LOCKED:
        return SourceAccessDenied(f"{where}: the account cannot log in ({said}); ask the DBA to renew it")
    if code == _AUTH_PLUGIN:
        return SourceAccessDenied(
            f"{where}: the account's authentication plugin is not supported ({said}); use "
            "mysql_native_password, ed25519 or caching_sha2_password for the capture account"
        )
    if code == _PRIVILEGE:
        fix = _privilege_fix(settings, text, who)
        return SourceAccessDenied(f"{where} lacks a privilege for {doing} ({said}); {fix}")
    if code in _TABLE_DENIED or code == _DB_DENIED:
        return SourceAccessDenied(
            f"{where} may not read what it captures ({doing}: {said}); the capture account needs "
            f"{CAPTURE_GRANTS}"
        )
    if code == _UNKNOWN_DB:
        return SourceAccessDenied(f"{where}: {said} ({doing}); create the database or correct source.tables")
    if code == _SERVER_ID_CLASH:
        return SourceAccessDenied(f"{where}: {said}; give each pipeline its own source.server_id")
    if code == _TLS_UNAVAILABLE:
        return SourceSettingsError(
            f"{where}: source.ssl is set but the server offers no TLS ({said}); configure ssl_cert and "
            "ssl_key on the server, or remove source.ssl"
        )
    return None
