"""The snapshot reader's own connection (mysqlclient) honours source.ssl like the binlog reader's.

Against a private MariaDB that requires TLS (about two seconds to start, deleted at the end), as
tests/integration/test_source_tls.py does for the binlog source.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from cdc.core.errors import SourceAccessDenied, SourceSettingsError
from cdc.core.schemas import TableRef
from cdc.devstack.connections import MariaDbConnection, StackConnections
from cdc.devstack.private_mariadb import PrivateMariaDb
from cdc.devstack.tls import TlsMaterial, make_tls_material
from cdc.sources.mariadb import ConnectionSettings, TlsSettings, ZeroDatePolicy
from snapshotter.reader import SnapshotReader


@dataclass(frozen=True)
class TlsServer:
    conn: MariaDbConnection
    tls: TlsMaterial
    other_ca: TlsMaterial
    ref: TableRef


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    base = tmp_path_factory.mktemp("snapread-tls")
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
        with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE snapread_tls")
            cur.execute("CREATE TABLE snapread_tls.t (id INT PRIMARY KEY, v VARCHAR(20))")
            cur.execute("INSERT INTO snapread_tls.t VALUES (1, 'one'), (2, 'two')")
        yield TlsServer(m, tls, other, TableRef("snapread_tls", "t"))


def _read(m: MariaDbConnection, ref: TableRef, tls: TlsSettings | None) -> tuple[object, ...]:
    reader = SnapshotReader(
        ConnectionSettings(m.host, m.port, m.user, m.password, connect_timeout_s=3, tls=tls),
        ZeroDatePolicy.NULL,
    )
    try:
        return reader.read_chunk(ref, None, 10).rows
    finally:
        reader.close()


def test_verified_tls_reads_and_plain_is_refused(tls_server: TlsServer) -> None:
    m, ref = tls_server.conn, tls_server.ref
    assert _read(m, ref, TlsSettings(ca=tls_server.tls.ca_cert)) == ((1, "one"), (2, "two"))
    with pytest.raises(SourceAccessDenied, match=r"configure source\.ssl"):
        _read(m, ref, None)


def test_a_certificate_from_another_ca_fails_verification_unless_told(tls_server: TlsServer) -> None:
    m, ref = tls_server.conn, tls_server.ref
    with pytest.raises(SourceAccessDenied, match="verif"):
        _read(m, ref, TlsSettings(ca=tls_server.other_ca.ca_cert))
    assert _read(m, ref, TlsSettings(ca=tls_server.other_ca.ca_cert, verify=False))[0] == (1, "one")


def test_client_certificate_is_presented(tls_server: TlsServer) -> None:
    m, ref, tls = tls_server.conn, tls_server.ref, tls_server.tls
    with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("CREATE USER 'snapread_x509'@'127.0.0.1' IDENTIFIED BY %s REQUIRE X509", (m.password,))
        cur.execute("GRANT SELECT, BINLOG MONITOR ON *.* TO 'snapread_x509'@'127.0.0.1'")
    x509 = MariaDbConnection(
        m.host, m.port, "snapread_x509", m.password, m.root_user, m.root_password, m.server_id
    )
    with pytest.raises(SourceAccessDenied):
        _read(x509, ref, TlsSettings(ca=tls.ca_cert))
    assert len(_read(x509, ref, TlsSettings(ca=tls.ca_cert, cert=tls.client_cert, key=tls.client_key))) == 2


def test_tls_asked_of_a_server_without_it_is_refused_not_plain(
    stack: StackConnections, tls_server: TlsServer
) -> None:
    m = stack.mariadb  # the dev stack's server offers no TLS
    with pytest.raises((SourceSettingsError, SourceAccessDenied), match="TLS"):
        _read(m, TableRef("mysql", "db"), TlsSettings(ca=tls_server.tls.ca_cert, verify=False))
