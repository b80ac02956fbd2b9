"""What the dev stack renders (server.properties, mariadbd and postgres arguments, init SQL) and how
it reports a missing program. No service is started."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

import cdc.devstack.kafka as kafka_module
import cdc.devstack.mariadb as mariadb_module
import cdc.devstack.postgres as postgres_module
import cdc.devstack.process as process_module
from cdc.devstack.commands import dev
from cdc.devstack.kafka import (
    SINGLE_NODE_SETTINGS,
    Kafka,
    kafka_libs_dir,
    new_cluster_id,
    parse_properties,
    render_server_properties,
    resolve_kafka_jars,
)
from cdc.devstack.mariadb import CDC_PRIVILEGES, MariaDb, render_init_sql, sql_string
from cdc.devstack.postgres import Postgres
from cdc.devstack.process import MissingBinaryError, find_binary
from cdc.devstack.settings import ServiceName, StackSettings


@pytest.fixture
def settings(tmp_path: Path) -> StackSettings:
    return StackSettings(
        state_dir=tmp_path / "stack",
        mariadb_port=23307,
        kafka_port=29092,
        kafka_controller_port=29093,
        postgres_port=25433,
        pgsource_port=25434,
        cache_dir=tmp_path / "cache",
    )


def test_defaults() -> None:
    settings = StackSettings()
    assert (settings.mariadb_port, settings.kafka_port, settings.postgres_port) == (3307, 9092, 5433)
    assert settings.state_dir.name == ".devstack"
    assert settings.pgsource_port == 5434
    assert settings.services == (
        ServiceName.MARIADB,
        ServiceName.KAFKA,
        ServiceName.POSTGRES,
        ServiceName.PGSOURCE,
    )


def test_state_dir_and_cache_dir_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HEADWATER_DEVSTACK_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("HEADWATER_CACHE_DIR", str(tmp_path / "cache"))
    settings = StackSettings()
    assert settings.state_dir == tmp_path / "elsewhere"
    assert kafka_libs_dir(settings.cache_dir, "4.1.1") == tmp_path / "cache" / "kafka-4.1.1" / "libs"


def test_ports_must_differ(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ports must differ"):
        StackSettings(state_dir=tmp_path, mariadb_port=9092)


def test_services_subset_keeps_the_canonical_order(tmp_path: Path) -> None:
    settings = StackSettings(state_dir=tmp_path, services=(ServiceName.POSTGRES, ServiceName.MARIADB))
    assert settings.services == (ServiceName.MARIADB, ServiceName.POSTGRES)


def test_server_properties(settings: StackSettings, tmp_path: Path) -> None:
    props = parse_properties(render_server_properties(settings, tmp_path / "kdata"))
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == str(tmp_path / "kdata")
    for key, value in {
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "min.insync.replicas": "1",
        "group.initial.rebalance.delay.ms": "0",
    }.items():
        assert props[key] == value
        assert SINGLE_NODE_SETTINGS[key] == value


def test_kafka_argv(settings: StackSettings) -> None:
    kafka = Kafka(settings)
    argv = kafka.argv()
    assert argv[-2:] == ["kafka.Kafka", str(kafka.server_properties)]
    assert "-Xmx512m" in argv
    assert f"-Dlog4j2.configurationFile={kafka.log4j_file}" in argv
    assert argv[argv.index("-cp") + 1] == f"{settings.cache_dir}/kafka-4.1.1/libs/*"
    assert all(marker in " ".join(argv) for marker in kafka.cmdline_markers())


def test_cluster_id_looks_like_kafka_storage_random_uuid() -> None:
    cluster_id = new_cluster_id()
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id)
    assert new_cluster_id() != cluster_id


def test_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # One uuid in 64 encodes to an id starting with "-", which kafka-storage's argument parser takes
    # for an option ("argument --cluster-id/-t: expected one argument"); CI hit it. Kafka's own
    # Uuid.randomUuid draws again in that case, and so does new_cluster_id.
    dash_first = uuid.UUID(bytes=b"\xf8" + bytes(15))
    monkeypatch.setattr(kafka_module.uuid, "uuid4", iter([dash_first, dash_first, uuid.UUID(int=7)]).__next__)
    cluster_id = new_cluster_id()
    assert not cluster_id.startswith("-")
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id)


def test_a_stored_cluster_id_starting_with_a_dash_is_replaced_before_formatting(
    settings: StackSettings,
) -> None:
    # A stack made before the fix may hold such an id with unformatted storage: it is drawn again.
    kafka = Kafka(settings)
    kafka.home.mkdir(parents=True)
    kafka.cluster_id_file.write_text("-" + "A" * 21 + "\n")
    cluster_id = kafka.cluster_id()
    assert not cluster_id.startswith("-")
    assert kafka.cluster_id_file.read_text().strip() == cluster_id


def test_cluster_id_is_persisted(settings: StackSettings) -> None:
    kafka = Kafka(settings)
    kafka.home.mkdir(parents=True)
    assert kafka.cluster_id() == kafka.cluster_id() == kafka.cluster_id_file.read_text().strip()


def test_mariadbd_argv(settings: StackSettings) -> None:
    maria = MariaDb(settings)
    argv = maria.argv()
    assert argv[0].endswith("mariadbd")
    assert argv[1] == "--no-defaults"  # mariadbd only honours it as the first option
    for flag in (
        "--port=23307",
        "--bind-address=127.0.0.1",
        f"--socket={settings.state_dir}/mariadb/mariadb.sock",
        f"--datadir={settings.state_dir}/mariadb/data",
        "--log-bin=mariadb-bin",
        "--binlog-format=ROW",
        "--binlog-row-image=FULL",
        "--binlog-row-metadata=FULL",
        "--server-id=1",
        "--gtid-domain-id=0",
        "--log-slave-updates=ON",
        "--gtid-strict-mode=ON",
        f"--init-file={maria.init_file}",
    ):
        assert flag in argv
    assert not any(arg.startswith("--expire-logs-days") for arg in argv)
    assert all(marker in " ".join(argv) for marker in maria.cmdline_markers())


def test_init_sql_creates_both_accounts_on_both_hosts() -> None:
    sql = render_init_sql("cdc", "s3cret", "r00t")
    lines = sql.splitlines()
    assert "SET SESSION sql_log_bin = 0;" in lines
    for host in ("127.0.0.1", "localhost"):
        assert f"CREATE USER IF NOT EXISTS 'cdc'@'{host}';" in lines
        assert f"ALTER USER 'cdc'@'{host}' IDENTIFIED BY 's3cret';" in lines
        assert f"GRANT {', '.join(CDC_PRIVILEGES)} ON *.* TO 'cdc'@'{host}';" in lines
        assert f"ALTER USER 'root'@'{host}' IDENTIFIED BY 'r00t';" in lines
    # mariadbd reads the init file one statement per line.
    assert all(line.startswith("--") or line.endswith(";") for line in lines)
    assert "ALL" not in " ".join(line for line in lines if "'cdc'" in line)


def test_sql_string_escapes_quotes() -> None:
    assert sql_string("it's") == "'it\\'s'"
    assert sql_string("back\\slash") == "'back\\\\slash'"


def test_postgres_argv(settings: StackSettings) -> None:
    pg = Postgres(settings)
    argv = pg.argv()
    assert argv[0].endswith("/postgres")
    assert argv[argv.index("-D") + 1] == str(settings.state_dir / "postgres" / "data")
    assert argv[argv.index("-p") + 1] == "25433"
    assert "listen_addresses=127.0.0.1" in argv
    assert f"unix_socket_directories={pg.socket_dir}" in argv
    assert all(marker in " ".join(argv) for marker in pg.cmdline_markers())


def test_connections_are_the_settings(settings: StackSettings) -> None:
    from cdc.devstack.stack import DevStack

    conn = DevStack(settings).connections()
    assert (conn.mariadb.port, conn.mariadb.user, conn.mariadb.server_id) == (23307, "cdc", 1)
    assert conn.kafka.bootstrap_servers == "127.0.0.1:29092"
    assert (conn.postgres.port, conn.postgres.database) == (25433, "serving")
    assert "password" not in repr(conn.mariadb) and "password" not in repr(conn.postgres)


# -- missing programs -----------------------------------------------------------------------------


@pytest.fixture
def empty_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A system with none of the stack's programs installed."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(process_module, "SYSTEM_DIRS", ())
    monkeypatch.setattr(mariadb_module, "MARIADBD_CANDIDATES", ())
    monkeypatch.setattr(mariadb_module, "INSTALL_DB_CANDIDATES", ())
    monkeypatch.setattr(postgres_module, "PG_BIN_DIRS", ())


def test_find_binary_names_the_package(empty_path: None) -> None:
    with pytest.raises(MissingBinaryError, match=r"apt-get install mariadb-server") as excinfo:
        find_binary("mariadbd", "mariadb-server")
    assert excinfo.value.package == "mariadb-server"


@pytest.mark.usefixtures("empty_path")
@pytest.mark.parametrize(
    ("service", "package"),
    [(MariaDb, "mariadb-server"), (Postgres, "postgresql"), (Kafka, "openjdk-17-jre-headless")],
)
def test_each_service_names_its_debian_package(
    settings: StackSettings, service: type[MariaDb | Postgres | Kafka], package: str
) -> None:
    with pytest.raises(MissingBinaryError) as excinfo:
        service(settings).prepare()
    assert excinfo.value.package == package
    assert f"apt-get install {package}" in str(excinfo.value)


def test_maven_is_named_when_the_jars_are_not_cached(empty_path: None, tmp_path: Path) -> None:
    with pytest.raises(MissingBinaryError, match=r"apt-get install maven"):
        resolve_kafka_jars(tmp_path / "cache", "4.1.1", tmp_path / "kafka.log")


def test_cached_jars_need_no_maven(empty_path: None, tmp_path: Path) -> None:
    libs = kafka_libs_dir(tmp_path / "cache", "4.1.1")
    libs.mkdir(parents=True)
    (libs / ".complete").write_text("done")
    assert resolve_kafka_jars(tmp_path / "cache", "4.1.1", tmp_path / "kafka.log") == libs


def test_cli_up_reports_the_missing_package(empty_path: None, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        dev, ["up", f"--dir={tmp_path / 'stack'}", "--services=mariadb", "--mariadb-port=23399"]
    )
    assert result.exit_code == 1
    assert "mariadbd not found" in result.output
    assert "apt-get install mariadb-server" in result.output


def test_cli_rejects_unknown_services(tmp_path: Path) -> None:
    result = CliRunner().invoke(dev, ["status", f"--dir={tmp_path}", "--services=mariadb,redis"])
    assert result.exit_code == 2
    assert "redis" in result.output


def test_cli_status_of_a_stack_that_never_ran(tmp_path: Path) -> None:
    result = CliRunner().invoke(dev, ["status", f"--dir={tmp_path}", "--mariadb-port=23399"])
    assert result.exit_code == 1
    assert result.output.count("stopped") == 4  # mariadb, kafka, postgres, pgsource


def test_stale_postmaster_lock_is_removed(settings: StackSettings) -> None:
    import subprocess

    pg = Postgres(settings)
    pg.data_dir.mkdir(parents=True)
    lock = pg.data_dir / "postmaster.pid"
    gone = subprocess.Popen(["true"])
    gone.wait()
    lock.write_text(f"{gone.pid}\n{pg.data_dir}\n")
    pg._remove_stale_lock()
    assert not lock.exists()
    # A lock held by a live process that is not a postgres on this data dir is stale too.
    with subprocess.Popen(["sleep", "30"]) as other:
        lock.write_text(f"{other.pid}\n")
        pg._remove_stale_lock()
        assert not lock.exists()
        other.kill()
