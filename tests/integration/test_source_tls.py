"""TLS to the MariaDB source (issue 8, item 17), against a private MariaDB that requires it.

The fixture makes a throwaway CA with a server and a client certificate, and starts a private
MariaDB with ssl_ca/ssl_cert/ssl_key and require_secure_transport=ON (about two seconds), deleted at
the end. Reading binlog changes at all proves that both kinds of connection the source opens (control
queries and the binlog dump) use TLS: the server refuses every plain one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cdc.config.models import MariaDbSourceConfig, SourceSslConfig
from cdc.core.errors import SourceAccessDenied
from cdc.core.events import ChangeEvent
from cdc.daemon.mariadb_source import MariaDbSource
from cdc.devstack.connections import MariaDbConnection
from cdc.devstack.private_mariadb import PrivateMariaDb
from cdc.devstack.tls import TlsMaterial, make_tls_material
from tests.support.source_cli import SourceTarget, run_until_caught_up, server_id, unique, write_config


@dataclass(frozen=True)
class TlsServer:
    conn: MariaDbConnection
    tls: TlsMaterial
    other_ca: TlsMaterial  # a CA that did not sign the server's certificate
    db: str
    x509_user: str  # an account that REQUIRE X509 (password: the cdc user's)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    base = tmp_path_factory.mktemp("srcconn-tls")
    tls = make_tls_material(base / "tls")
    other = make_tls_material(base / "other", ca_name="Some other CA")
    options = [
        f"--ssl-ca={tls.ca_cert}",
        f"--ssl-cert={tls.server_cert}",
        f"--ssl-key={tls.server_key}",
        "--require-secure-transport=ON",
    ]
    with PrivateMariaDb(base / "db", options) as server:
        m = server.connection()
        db, x509 = unique(), unique("srcconn_x509")
        # pymysql negotiates TLS by itself when no ssl option is given (unverified: fine for set-up)
        with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {db}")
            cur.execute(f"CREATE TABLE {db}.t (id INT PRIMARY KEY, v VARCHAR(20))")
            cur.execute(f"CREATE USER '{x509}'@'127.0.0.1' IDENTIFIED BY %s REQUIRE X509", (m.password,))
            cur.execute(f"GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '{x509}'@'127.0.0.1'")
            cur.execute(f"GRANT SELECT ON {db}.* TO '{x509}'@'127.0.0.1'")
        yield TlsServer(m, tls, other, db, x509)


def source(server: TlsServer, ssl: SourceSslConfig | None, user: str = "") -> MariaDbSource:
    m = server.conn
    config = MariaDbSourceConfig(
        host=m.host,
        port=m.port,
        user=user or m.user,
        password=m.password,
        server_id=server_id(),
        tables=[f"{server.db}.*"],
        heartbeat_seconds=1,
        connect_timeout_seconds=3,
        ssl=ssl,
    )
    return MariaDbSource(config, blocking=False)


def insert(server: TlsServer, *rows: tuple[int, str]) -> None:
    with server.conn.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {server.db}.t VALUES (%s, %s)", rows)


def test_plain_connection_is_refused_with_a_clear_error(tls_server: TlsServer, tmp_path: Path) -> None:
    m = tls_server.conn
    target = SourceTarget(m.host, m.port, m.user, server_id(), (f"{tls_server.db}.*",))
    result = run_until_caught_up(write_config(tmp_path, target), m.password)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "require_secure_transport" in result.stderr and "configure source.ssl" in result.stderr
    assert "retrying" not in result.stderr


def test_verified_tls_reads_binlog_changes(tls_server: TlsServer) -> None:
    src = source(tls_server, SourceSslConfig(ca=tls_server.tls.ca_cert, verify=True))
    start = src.current_restart_point()
    insert(tls_server, (1, "one"), (2, "two"))
    events = [r for r in src.records(start) if isinstance(r, ChangeEvent)]
    src.close()
    assert [(e.op.value, e.after) for e in events] == [("c", (1, "one")), ("c", (2, "two"))]


def test_cdc_run_over_tls_end_to_end(tls_server: TlsServer, tmp_path: Path) -> None:
    m = tls_server.conn
    ssl = f"{{ca: '{tls_server.tls.ca_cert}', verify: true}}"
    config = write_config(
        tmp_path, SourceTarget(m.host, m.port, m.user, server_id(), (f"{tls_server.db}.*",), ssl)
    )
    first = run_until_caught_up(config, m.password)  # the first start fixes the starting position
    assert first.returncode == 0, first.stderr[-3000:]
    insert(tls_server, (10, "ten"), (11, "eleven"))
    second = run_until_caught_up(config, m.password)
    assert second.returncode == 0, second.stderr[-3000:]
    with sqlite3.connect(tmp_path / "serving.db") as db:
        assert db.execute("SELECT id, v FROM t ORDER BY id").fetchall() == [(10, "ten"), (11, "eleven")]


def test_a_certificate_from_another_ca_fails_verification(tls_server: TlsServer, tmp_path: Path) -> None:
    m = tls_server.conn
    ssl = f"{{ca: '{tls_server.other_ca.ca_cert}'}}"
    config = write_config(
        tmp_path, SourceTarget(m.host, m.port, m.user, server_id(), (f"{tls_server.db}.*",), ssl)
    )
    result = run_until_caught_up(config, m.password)
    assert result.returncode == 2, result.stderr[-3000:]
    log = result.stderr
    assert "failed verification" in log and f"source.ssl.ca ({tls_server.other_ca.ca_cert})" in log, log
    assert f"{m.host}:{m.port}" in log and "retrying" not in log, log


def test_encrypt_without_verifying_when_told(tls_server: TlsServer) -> None:
    src = source(tls_server, SourceSslConfig(ca=tls_server.other_ca.ca_cert, verify=False))
    assert src.tables() == (f"{tls_server.db}.t",)
    src.close()


def test_client_certificate_for_an_account_that_requires_x509(tls_server: TlsServer) -> None:
    ca = tls_server.tls.ca_cert
    without = source(tls_server, SourceSslConfig(ca=ca), user=tls_server.x509_user)
    with pytest.raises(SourceAccessDenied, match="refused the login"):
        without.current_restart_point()
    tls = tls_server.tls
    with_cert = source(
        tls_server,
        SourceSslConfig(ca=ca, cert=tls.client_cert, key=tls.client_key),
        user=tls_server.x509_user,
    )
    start = with_cert.current_restart_point()
    insert(tls_server, (20, "twenty"))
    events = [r for r in with_cert.records(start) if isinstance(r, ChangeEvent)]
    with_cert.close()
    assert [e.after for e in events] == [(20, "twenty")]
