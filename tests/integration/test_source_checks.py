"""The MariaDB source's start-up checks and terminal errors, against real servers (issue 8, items 1, 10, 15).

Wrong server settings are exercised on private MariaDB processes (the shared server's globals are not
ours to change); access errors on the shared server with throwaway users; the server_id clash with two
real readers on one id. Each `cdc run` is a real process: the exit code and the log are the user's.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdc.config.models import MariaDbSourceConfig
from cdc.core.errors import SourceAccessDenied, SourceSettingsError
from cdc.daemon.mariadb_source import MariaDbSource
from cdc.devstack.connections import MariaDbConnection, StackConnections
from cdc.devstack.private_mariadb import PrivateMariaDb
from cdc.devstack.private_server import free_loopback_port
from tests.support.source_cli import (
    SourceTarget,
    cdc_argv,
    cdc_env,
    run_until_caught_up,
    server_id,
    unique,
    write_config,
)


@pytest.fixture()
def database(stack: StackConnections) -> Iterator[str]:
    db = unique()
    with stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {db}")
        cur.execute(f"CREATE TABLE {db}.t (id INT PRIMARY KEY, v INT)")
    yield db
    with stack.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {db}")


@contextlib.contextmanager
def throwaway_user(m: MariaDbConnection, *grants: str) -> Iterator[tuple[str, str]]:
    """A user on 127.0.0.1 with only ``grants`` ("REPLICATION SLAVE ON *.*", ...), kept out of the binlog."""
    user, password = unique("srcconn_u"), secrets.token_hex(8)
    with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SET SESSION sql_log_bin = 0")
        cur.execute(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY %s", (password,))
        for grant in grants:
            cur.execute(f"GRANT {grant} TO '{user}'@'127.0.0.1'")
    try:
        yield user, password
    finally:
        with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("SET SESSION sql_log_bin = 0")
            cur.execute(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")


def source_config(target: SourceTarget, password: str) -> MariaDbSourceConfig:
    return MariaDbSourceConfig(
        host=target.host,
        port=target.port,
        user=target.user,
        password=password,
        server_id=target.server_id,
        tables=list(target.tables),
        connect_timeout_seconds=3,
    )


def assert_terminal(result: subprocess.CompletedProcess[str], *expected: str, secret: str = "") -> None:
    """Exit 2 at once (no retry loop), and the message carries each expected phrase."""
    log = result.stderr
    print(log[-2000:])  # shown with -rP: what the user reads
    assert result.returncode == 2, log[-3000:]
    assert "retrying" not in log, log[-3000:]
    for phrase in expected:
        assert phrase in log, f"{phrase!r} not in:\n{log[-3000:]}"
    if secret:
        assert secret not in log + result.stdout


# -- item 10: access ------------------------------------------------------------------------------


def test_wrong_password_is_terminal_and_names_the_source(
    stack: StackConnections, database: str, tmp_path: Path
) -> None:
    m = stack.mariadb
    target = SourceTarget(m.host, m.port, m.user, server_id(), (f"{database}.*",))
    wrong = "not-the-" + secrets.token_hex(6)
    result = run_until_caught_up(write_config(tmp_path, target), wrong, timeout=60)
    assert_terminal(result, f"{m.host}:{m.port}", f"'{m.user}'", "source.password", secret=wrong)
    with pytest.raises(SourceAccessDenied):
        MariaDbSource(source_config(target, wrong), blocking=False).current_restart_point()


def test_missing_binlog_monitor_grant_is_terminal(
    stack: StackConnections, database: str, tmp_path: Path
) -> None:
    m = stack.mariadb
    with throwaway_user(m, f"SELECT ON {database}.*", "REPLICATION SLAVE ON *.*") as (user, password):
        target = SourceTarget(m.host, m.port, user, server_id(), (f"{database}.*",))
        result = run_until_caught_up(write_config(tmp_path, target), password)
    assert_terminal(result, f"'{user}'", f"{m.host}:{m.port}", "GRANT BINLOG MONITOR")


def test_missing_replication_slave_grant_is_terminal(
    stack: StackConnections, database: str, tmp_path: Path
) -> None:
    m = stack.mariadb
    with throwaway_user(m, f"SELECT ON {database}.*", "BINLOG MONITOR ON *.*") as (user, password):
        target = SourceTarget(m.host, m.port, user, server_id(), (f"{database}.*",))
        result = run_until_caught_up(write_config(tmp_path, target), password)
    assert_terminal(result, f"'{user}'", "GRANT REPLICATION SLAVE")


def test_missing_select_on_a_captured_database_is_terminal(
    stack: StackConnections, database: str, tmp_path: Path
) -> None:
    m = stack.mariadb
    with throwaway_user(m, "REPLICATION SLAVE, BINLOG MONITOR ON *.*") as (user, password):
        target = SourceTarget(m.host, m.port, user, server_id(), (f"{database}.*",))
        result = run_until_caught_up(write_config(tmp_path, target), password)
    assert_terminal(result, f"'{user}'", database, f"GRANT SELECT ON `{database}`.*")


def test_unknown_database_is_terminal(stack: StackConnections, tmp_path: Path) -> None:
    m = stack.mariadb
    missing = unique("srcconn_missing")
    target = SourceTarget(m.host, m.port, m.user, server_id(), (f"{missing}.*",))
    result = run_until_caught_up(write_config(tmp_path, target), m.password)
    assert_terminal(result, missing, "source.tables", f"{m.host}:{m.port}")


def test_connection_refused_stays_transient(stack: StackConnections, tmp_path: Path) -> None:
    """Nothing listens on the port: a network problem, retried with backoff until stopped (exit 0)."""
    m = stack.mariadb
    target = SourceTarget(m.host, free_loopback_port(), m.user, server_id(), ("srcconn_any.*",))
    log_path = tmp_path / "cdc.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            cdc_argv(write_config(tmp_path, target)), env=cdc_env(m.password), stderr=log_file, text=True
        )
    try:
        # until it has met the refusal (a loaded machine takes seconds to import and start), then a
        # little longer: it must still be running, retrying
        deadline = time.monotonic() + 60
        while "retrying" not in log_path.read_text() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        time.sleep(1)
        assert proc.poll() is None, "a refused connection must be retried, not fatal"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = log_path.read_text()
    assert proc.returncode == 0, log
    assert "retrying" in log and f"{target.port}" in log, log


# -- item 1 (start-up part): server settings --------------------------------------------------------


def test_every_wrong_setting_is_named_at_once(tmp_path: Path) -> None:
    options = [
        "--skip-log-bin",
        "--binlog-format=STATEMENT",
        "--binlog-row-image=MINIMAL",
        "--binlog-row-metadata=MINIMAL",
        "--log-bin-compress=ON",
    ]
    with PrivateMariaDb(tmp_path / "db", options) as server:
        m = server.connection()
        target = SourceTarget(m.host, m.port, m.user, server_id(), ("srcconn_any.*",))
        result = run_until_caught_up(write_config(tmp_path, target), m.password)
    assert_terminal(
        result,
        f"{m.host}:{m.port}",
        "log_bin is OFF",
        "binlog_format is STATEMENT",
        "binlog_row_image is MINIMAL",
        "binlog_row_metadata is MINIMAL",
        "log_bin_compress is ON",
        "--log-bin",
        "binlog_format=ROW",
    )


def test_binlog_filter_on_a_captured_database_and_mixed_format(tmp_path: Path) -> None:
    db = unique()
    options = [f"--binlog-ignore-db={db}", "--binlog-format=MIXED", "--binlog-row-image=NOBLOB"]
    with PrivateMariaDb(tmp_path / "db", options) as server:
        m = server.connection()
        with m.connect_root(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {db}")
        target = SourceTarget(m.host, m.port, m.user, server_id(), (f"{db}.*",))
        result = run_until_caught_up(write_config(tmp_path, target), m.password)
    assert_terminal(
        result, "binlog_format is MIXED", "binlog_row_image is NOBLOB", f"binlog_ignore_db is {db}"
    )
    assert "binlog_row_metadata" not in result.stderr


def test_a_replica_that_does_not_log_what_it_replicates(tmp_path: Path) -> None:
    """Capturing from a replica without log_slave_updates would miss every replicated change."""
    db = unique()
    with (
        PrivateMariaDb(tmp_path / "primary") as primary,
        PrivateMariaDb(tmp_path / "replica", ["--server-id=2", "--log-slave-updates=OFF"]) as replica,
    ):
        p, r = primary.connection(), replica.connection()
        with r.connect_root(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(
                "CHANGE MASTER TO master_host=%s, master_port=%s, master_user=%s, master_password=%s, "
                "master_use_gtid=slave_pos",
                (p.host, p.port, p.root_user, p.root_password),
            )
            cur.execute("START SLAVE")
            cur.execute(f"CREATE DATABASE {db}")
            deadline = time.monotonic() + 30
            while True:
                cur.execute("SHOW GLOBAL STATUS LIKE 'Slaves_running'")
                if int(cur.fetchone()[1]) > 0:
                    break
                assert time.monotonic() < deadline, "the private replica did not start replicating"
                time.sleep(0.2)
        target = SourceTarget(r.host, r.port, r.user, server_id(), (f"{db}.*",))
        result = run_until_caught_up(write_config(tmp_path, target), r.password)
        with r.connect_root(autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("STOP SLAVE")
    assert_terminal(result, "log_slave_updates is OFF on a server that is itself a replica")


def test_shared_server_passes_the_checks(stack: StackConnections, database: str) -> None:
    m = stack.mariadb
    source = MariaDbSource(
        MariaDbSourceConfig(
            host=m.host,
            port=m.port,
            user=m.user,
            password=m.password,
            server_id=server_id(),
            tables=[f"{database}.*"],
        ),
        blocking=False,
    )
    assert source.tables() == (f"{database}.t",)
    source.close()


def test_server_id_of_the_server_itself_is_refused(stack: StackConnections, database: str) -> None:
    m = stack.mariadb
    config = MariaDbSourceConfig(
        host=m.host,
        port=m.port,
        user=m.user,
        password=m.password,
        server_id=m.server_id,
        tables=[f"{database}.*"],
    )
    with pytest.raises(SourceSettingsError, match=rf"source.server_id is {m.server_id}, the server's own"):
        MariaDbSource(config, blocking=False).current_restart_point()


# -- item 15: two readers on one server_id ---------------------------------------------------------


def test_second_reader_on_the_same_server_id_stops_the_first_with_exit_2(
    stack: StackConnections, database: str, tmp_path: Path
) -> None:
    m = stack.mariadb
    clash_id = server_id()
    target = SourceTarget(m.host, m.port, m.user, clash_id, (f"{database}.*",))
    log_path = tmp_path / "first.log"
    with log_path.open("w") as log:
        first = subprocess.Popen(
            cdc_argv(write_config(tmp_path, target)), env=cdc_env(m.password), stderr=log
        )
    try:
        deadline = time.monotonic() + 60
        while "binlog dump started" not in log_path.read_text():
            assert first.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        # The server drops the older dump connection when a newer one registers the same id.
        second = MariaDbSource(source_config(target, m.password), blocking=False)
        for _ in second.records(second.current_restart_point()):
            pass
        second.close()
        assert first.wait(60) == 2, log_path.read_text()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    log = log_path.read_text()
    print(log[-2000:])
    assert f"server_id {clash_id}" in log and "source.server_id" in log, log
    assert "retrying" not in log, log
