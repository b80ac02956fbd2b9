"""Start-up checks of a MariaDB source: settings that would lose or garble changes, and access.

Run before the first binlog byte is read. Every wrong setting is reported at once (an operator
restarting a production server wants one list, not one error per restart), with its value and the fix.
The checks read only what the capture account can read (SHOW GLOBAL VARIABLES, SHOW MASTER STATUS).

What is checked, and why:
- log_bin ON: no binlog, nothing to capture.
- binlog_format ROW: STATEMENT (and MIXED, which chooses per statement) logs SQL text, not rows: those
  changes would be missing from the stream.
- binlog_row_image FULL: MINIMAL and NOBLOB leave columns out of the images (a key of null, a lost
  value).
- binlog_row_metadata FULL: column names, signedness and the primary key come from it (MariaDB 10.5+).
- log_bin_compress OFF: compressed row events are not decoded.
- binlog_do_db / binlog_ignore_db: a captured database the server does not log is silently missing.
- log_slave_updates ON when the server is itself a running replica: else what it replicates is not in
  its binlog.
- source.server_id differs from the server's own id (MariaDB refuses a replica with its own id).
- a MariaDB server at all: MySQL's binlog and GTIDs differ.
- each database named literally in source.tables exists and the account may use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pymysql
import pymysql.cursors

from cdc.core.errors import SourceAccessDenied, SourceSettingsError
from cdc.sources.mariadb.connection import control, current_account
from cdc.sources.mariadb.connection_settings import ConnectionSettings
from cdc.sources.mariadb.source_errors import error_code

__all__ = ["ServerSettings", "SettingProblem", "check_source", "read_server_settings", "setting_problems"]

_VARIABLES = (
    "version",
    "server_id",
    "log_bin",
    "binlog_format",
    "binlog_row_image",
    "binlog_row_metadata",
    "log_bin_compress",
    "log_slave_updates",
)
_ER_DBACCESS_DENIED = 1044
_ER_BAD_DB = 1049


@dataclass(frozen=True)
class ServerSettings:
    """What the server says about its binlog (global values)."""

    version: str
    server_id: int
    log_bin: bool
    binlog_format: str
    binlog_row_image: str
    binlog_row_metadata: str | None  # None: no such variable (MariaDB before 10.5, MySQL)
    log_bin_compress: bool
    binlog_do_db: tuple[str, ...] = ()
    binlog_ignore_db: tuple[str, ...] = ()
    log_slave_updates: bool = True
    replicating: bool = False  # replica threads run: the server applies another server's changes


@dataclass(frozen=True)
class SettingProblem:
    setting: str
    value: str
    fix: str

    def describe(self) -> str:
        return f"{self.setting} is {self.value}: {self.fix}"


def _persist(setting: str, value: str, sessions: bool = True) -> str:
    note = "; sessions opened before keep the old value until they reconnect" if sessions else ""
    return (
        f"SET GLOBAL {setting}={value}, and put {setting}={value} under [mariadbd] in the server's "
        f"configuration{note}"
    )


def _db_part(pattern: str) -> str:
    return pattern.split(".", 1)[0]


def _db_regex(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(p) for p in _db_part(pattern).split("*")) + "$")


def setting_problems(
    server: ServerSettings, replica_server_id: int, include: tuple[str, ...]
) -> list[SettingProblem]:
    """Every setting of ``server`` that would lose or garble what ``include`` captures."""
    problems: list[SettingProblem] = []
    if "mariadb" not in server.version.lower():
        problems.append(
            SettingProblem(
                "version",
                f"{server.version} (not MariaDB)",
                "source.type mariadb reads MariaDB's binlog and GTIDs; point it at MariaDB 10.5 or newer",
            )
        )
    if not server.log_bin:
        problems.append(
            SettingProblem(
                "log_bin",
                "OFF",
                "start mariadbd with --log-bin (e.g. log_bin=mariadb-bin in the [mariadbd] section); "
                "it cannot be turned on while the server runs",
            )
        )
    if server.binlog_format.upper() != "ROW":
        problems.append(
            SettingProblem("binlog_format", server.binlog_format, _persist("binlog_format", "ROW"))
        )
    if server.binlog_row_image.upper() != "FULL":
        problems.append(
            SettingProblem("binlog_row_image", server.binlog_row_image, _persist("binlog_row_image", "FULL"))
        )
    if server.binlog_row_metadata is None:
        problems.append(
            SettingProblem(
                "binlog_row_metadata",
                "not available",
                "the server predates MariaDB 10.5; upgrade, then set binlog_row_metadata=FULL "
                "(column names and primary keys come from it)",
            )
        )
    elif server.binlog_row_metadata.upper() != "FULL":
        problems.append(
            SettingProblem(
                "binlog_row_metadata", server.binlog_row_metadata, _persist("binlog_row_metadata", "FULL")
            )
        )
    if server.log_bin_compress:
        problems.append(
            SettingProblem(
                "log_bin_compress",
                "ON",
                "compressed row events are not read; " + _persist("log_bin_compress", "OFF", sessions=False),
            )
        )
    if server.replicating and not server.log_slave_updates:
        problems.append(
            SettingProblem(
                "log_slave_updates",
                "OFF on a server that is itself a replica",
                "the changes it applies from its primary are not written to its binlog and would be "
                "missing; set log_slave_updates=ON under [mariadbd] and restart, or capture from the primary",
            )
        )
    if server.server_id == replica_server_id:
        problems.append(
            SettingProblem(
                "source.server_id",
                f"{replica_server_id}, the server's own server_id",
                "give this pipeline a server_id no other server or replica of this server uses",
            )
        )
    problems += _filter_problems(server, include)
    return problems


def _filter_problems(server: ServerSettings, include: tuple[str, ...]) -> list[SettingProblem]:
    problems: list[SettingProblem] = []
    if server.binlog_do_db:
        logged = set(server.binlog_do_db)
        outside = [p for p in include if "*" in _db_part(p) or _db_part(p) not in logged]
        if outside:
            problems.append(
                SettingProblem(
                    "binlog_do_db",
                    ",".join(server.binlog_do_db),
                    f"the server logs only these databases, and source.tables {outside} reaches others; "
                    "remove binlog_do_db from the server's configuration (restart) or capture only these",
                )
            )
    ignored = [db for db in server.binlog_ignore_db if any(_db_regex(p).match(db) for p in include)]
    if ignored:
        problems.append(
            SettingProblem(
                "binlog_ignore_db",
                ",".join(ignored),
                "the server does not log changes to these captured databases; remove them from "
                "binlog_ignore_db in the server's configuration (restart) or exclude them from source.tables",
            )
        )
    return problems


def read_server_settings(cur: pymysql.cursors.Cursor) -> ServerSettings:
    names = ", ".join(f"'{name}'" for name in _VARIABLES)  # constants, not input
    cur.execute(f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({names})")
    values = {str(name).lower(): str(value) for name, value in cur.fetchall()}
    log_bin = values.get("log_bin", "OFF").upper() == "ON"
    cur.execute("SHOW GLOBAL STATUS LIKE 'Slaves_running'")
    running = cur.fetchone()
    do_db: tuple[str, ...] = ()
    ignore_db: tuple[str, ...] = ()
    if log_bin:
        cur.execute("SHOW MASTER STATUS")  # BINLOG MONITOR; the capture needs it anyway
        row = cur.fetchone()
        if row is not None and len(row) >= 4:
            do_db = tuple(db for db in str(row[2] or "").split(",") if db)
            ignore_db = tuple(db for db in str(row[3] or "").split(",") if db)
    return ServerSettings(
        version=values.get("version", "unknown"),
        server_id=int(values.get("server_id", "0")),
        log_bin=log_bin,
        binlog_format=values.get("binlog_format", "unknown"),
        binlog_row_image=values.get("binlog_row_image", "unknown"),
        binlog_row_metadata=values.get("binlog_row_metadata"),
        log_bin_compress=values.get("log_bin_compress", "OFF").upper() == "ON",
        binlog_do_db=do_db,
        binlog_ignore_db=ignore_db,
        log_slave_updates=values.get("log_slave_updates", "ON").upper() == "ON",
        replicating=running is not None and str(running[1]).isdigit() and int(running[1]) > 0,
    )


def _database_problems(cur: pymysql.cursors.Cursor, include: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Databases named literally in ``include`` that do not exist, and those the account may not use."""
    unknown: list[str] = []
    denied: list[str] = []
    for db in dict.fromkeys(_db_part(p) for p in include if "*" not in _db_part(p)):
        try:
            cur.execute(f"USE `{db.replace('`', '``')}`")
        except pymysql.MySQLError as exc:
            if error_code(exc) == _ER_BAD_DB:
                unknown.append(db)
            elif error_code(exc) == _ER_DBACCESS_DENIED:
                denied.append(db)
            else:
                raise
    return unknown, denied


def check_source(
    settings: ConnectionSettings, replica_server_id: int, include: tuple[str, ...]
) -> ServerSettings:
    """Raise SourceSettingsError listing every wrong setting, or SourceAccessDenied naming the
    databases that are missing or closed to the account; returns what the server said."""
    where = settings.describe()
    with control(settings, "checking the server's binlog settings") as cur:
        server = read_server_settings(cur)
        problems = setting_problems(server, replica_server_id, include)
        if problems:
            lines = "\n".join(f"  - {p.describe()}" for p in problems)
            raise SourceSettingsError(
                f"{where} is not set up for change capture ({len(problems)} "
                f"problem{'s' if len(problems) > 1 else ''}); fix and start again:\n{lines}"
            )
        unknown, denied = _database_problems(cur, include)
        if unknown or denied:
            account = current_account(cur) or f"'{settings.user}'@'<client host>'"
            parts = [f"database {db!r} named in source.tables does not exist" for db in unknown]
            parts += [f"the account may not use database {db!r}" for db in denied]
            fixes = [f"GRANT SELECT ON `{db}`.* TO {account}" for db in denied]
            if unknown:
                fixes.append("create the missing databases or correct source.tables")
            raise SourceAccessDenied(f"{where}: {'; '.join(parts)}. To fix: {'; '.join(fixes)}")
    return server
