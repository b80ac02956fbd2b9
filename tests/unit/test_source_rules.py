"""The source's settings rules and error table, on values the server could answer (no server needed).

The integration tests (tests/integration/test_source_checks.py) put real servers behind these; here
are the cases no test server can show: a MySQL server, a MariaDB before 10.5, binlog_do_db patterns.
"""

from __future__ import annotations

import ssl
from dataclasses import replace
from pathlib import Path

import pymysql
import pytest

from cdc.core.errors import ConfigError, SourceAccessDenied, SourceUnavailable
from cdc.sources.mariadb.connection_settings import ConnectionSettings, TlsSettings
from cdc.sources.mariadb.server_checks import ServerSettings, setting_problems
from cdc.sources.mariadb.source_errors import server_id_clash, translate

GOOD = ServerSettings(
    version="10.11.19-MariaDB-log",
    server_id=1,
    log_bin=True,
    binlog_format="ROW",
    binlog_row_image="FULL",
    binlog_row_metadata="FULL",
    log_bin_compress=False,
)
SOURCE = ConnectionSettings("127.0.0.1", 3307, "cdc", "s3cret-pw")


def named(server: ServerSettings, include: tuple[str, ...] = ("wiki.*",), replica: int = 62001) -> list[str]:
    return [p.setting for p in setting_problems(server, replica, include)]


def test_a_well_configured_server_has_no_problem() -> None:
    assert named(GOOD) == []


def test_mysql_and_old_mariadb_are_named() -> None:
    assert named(replace(GOOD, version="8.0.36", binlog_row_metadata="FULL")) == ["version"]
    problems = setting_problems(replace(GOOD, binlog_row_metadata=None), 62001, ("wiki.*",))
    assert [p.describe() for p in problems] == [
        "binlog_row_metadata is not available: the server predates MariaDB 10.5; upgrade, then set "
        "binlog_row_metadata=FULL (column names and primary keys come from it)"
    ]


def test_partial_row_images_of_newer_servers_are_refused() -> None:
    assert named(replace(GOOD, binlog_row_image="FULL_NODUP")) == ["binlog_row_image"]


def test_the_servers_own_id_is_refused() -> None:
    assert named(GOOD, replica=1) == ["source.server_id"]


def test_a_running_replica_must_log_what_it_replicates() -> None:
    assert named(replace(GOOD, replicating=True, log_slave_updates=False)) == ["log_slave_updates"]
    assert named(replace(GOOD, replicating=False, log_slave_updates=False)) == []  # a primary: fine


def test_binlog_do_db_must_cover_every_captured_database() -> None:
    only_wiki = replace(GOOD, binlog_do_db=("wiki",))
    assert named(only_wiki, ("wiki.*",)) == []
    assert named(only_wiki, ("wiki.page", "shop.*")) == ["binlog_do_db"]
    assert named(only_wiki, ("wik*.*",)) == ["binlog_do_db"]  # a wildcard may reach unlogged ones


def test_binlog_ignore_db_only_matters_for_captured_databases() -> None:
    ignoring = replace(GOOD, binlog_ignore_db=("scratch", "wiki_archive"))
    assert named(ignoring, ("wiki.*",)) == []
    problems = setting_problems(ignoring, 62001, ("wiki*.*",))
    assert [p.value for p in problems] == ["wiki_archive"]


def test_network_and_busy_server_errors_stay_transient() -> None:
    for code in (2003, 2013, 1040, 1053, 1927):
        error = translate(pymysql.OperationalError(code, "boom"), SOURCE, "while connecting")
        assert isinstance(error, SourceUnavailable), code


def test_refused_logins_are_terminal_name_the_source_and_never_the_password() -> None:
    error = translate(
        pymysql.OperationalError(1045, "Access denied for user 'cdc'@'127.0.0.1' (using password: YES)"),
        SOURCE,
        "while connecting",
        offers_tls=True,
    )
    assert isinstance(error, SourceAccessDenied)
    text = str(error)
    assert "127.0.0.1:3307" in text and "'cdc'" in text and "source.password" in text
    assert "source.ssl" in text  # the server offers TLS: it may require it
    assert SOURCE.password not in text and SOURCE.password not in repr(SOURCE)


def test_a_missing_privilege_names_the_narrow_grant() -> None:
    message = (
        "Access denied; you need (at least one of) the SUPER, BINLOG MONITOR privilege(s) for this operation"
    )
    error = translate(
        pymysql.OperationalError(1227, message), SOURCE, "SHOW MASTER STATUS", account="'cdc'@'%'"
    )
    assert isinstance(error, SourceAccessDenied)
    assert "GRANT BINLOG MONITOR ON *.* TO 'cdc'@'%'" in str(error)


def test_errors_nobody_classified_are_left_alone() -> None:
    assert translate(pymysql.ProgrammingError(1064, "syntax"), SOURCE, "x") is None


def test_tls_verification_failure_is_terminal() -> None:
    wrapped = pymysql.OperationalError(2003, "Can't connect to MySQL server on '127.0.0.1' (...)")
    cause = ssl.SSLCertVerificationError(1, "certificate verify failed")
    wrapped.original_exception = cause  # type: ignore[attr-defined]  # as pymysql sets it
    tls = replace(SOURCE, tls=TlsSettings(ca=Path("/etc/ca.pem")))
    error = translate(wrapped, tls, "while connecting")
    assert isinstance(error, SourceAccessDenied) and "source.ssl.ca (/etc/ca.pem)" in str(error)


def test_a_tls_error_on_an_established_stream_is_a_lost_connection() -> None:
    lost = pymysql.OperationalError(2013, "Lost connection to server during query (bad record mac)")
    lost.__cause__ = ssl.SSLError(1, "[SSL: SSLV3_ALERT_BAD_RECORD_MAC]")
    assert isinstance(translate(lost, SOURCE, "reading the binlog"), SourceUnavailable)


def test_a_server_id_clash_names_the_id_and_the_fix() -> None:
    text = str(
        server_id_clash(SOURCE, 62042, "A slave with the same server_uuid/server_id is already connected")
    )
    assert "server_id 62042" in text and "source.server_id" in text


def test_unreadable_tls_files_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"source\.ssl\.ca"):
        TlsSettings(ca=tmp_path / "missing.pem").context()
    with pytest.raises(ConfigError, match=r"source\.ssl\.cert"):
        TlsSettings(cert=tmp_path / "missing.pem").context()


def test_tls_contexts_verify_unless_told_not_to() -> None:
    strict = TlsSettings().context()
    assert strict.verify_mode == ssl.CERT_REQUIRED and strict.check_hostname
    loose = TlsSettings(verify=False).context()
    assert loose.verify_mode == ssl.CERT_NONE and not loose.check_hostname
