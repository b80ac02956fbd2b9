"""Apache Kafka, a real single-node KRaft broker (broker and controller in one JVM, `kafka.Kafka`).

Kafka is no Debian package: its jars come from Maven Central at a pinned version, resolved once with
``mvn dependency:copy-dependencies`` over the small ``kafka-pom.xml`` shipped next to this module, and
cached under ``<cache dir>/kafka-<version>/libs`` (cache dir: HEADWATER_CACHE_DIR, else
~/.cache/headwater), so a second `up` downloads nothing.
"""

from __future__ import annotations

import base64
import os
import shutil
import uuid
from importlib import resources
from pathlib import Path

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient

from cdc.devstack.connections import KafkaConnection
from cdc.devstack.process import DevStackError, find_binary, log_tail, run_logged
from cdc.devstack.service import Service
from cdc.devstack.settings import LOOPBACK, ServiceName, StackSettings

JAVA_PACKAGE = "openjdk-17-jre-headless"
MAVEN_PACKAGE = "maven"
MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL_CLASS = "kafka.tools.StorageTool"
NODE_ID = 1
COMPLETE_MARKER = ".complete"

# Transactions on a single node: the internal topics cannot have 3 replicas here.
# docker-compose.yml sets the same (as KAFKA_* variables); tests/unit/test_docker_compose.py checks.
SINGLE_NODE_SETTINGS: dict[str, str] = {
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "min.insync.replicas": "1",
    "group.initial.rebalance.delay.ms": "0",
    "num.partitions": "1",
}

LOG4J2_PROPERTIES = """\
# Written by cdc dev up: log to stdout, which the dev stack appends to logs/kafka.log.
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


TRANSACTIONS_READY_S = 120

# The broker's collector: ZGC, which collects concurrently (pauses under a millisecond whatever the
# heap), not G1 (the JVM's default and Kafka's start script's), which stops the broker for every young
# collection. On this 2-core machine shared by several engineers a G1 pause that takes ~20 ms on an
# idle machine took 78-305 ms at load 9-14 (2-3 a run) and once 629 ms at load 5, inside 45 s
# end-to-end runs at 10k changes/s (private brokers from this code, -Xlog:gc): every commit, marker
# and fetch in flight waited for it, and one such pause is a missed end-to-end p99 (that run: 308 ms).
# ZGC, 7 runs alternated with G1's 7 (load 3.5-5.7): no pause over 1 ms, broker CPU per change within
# the noise (~24-26 us), e2e p99 median 109 ms against 135 (each arm 62-308 ms from run to run: the
# broker has other stalls); 100,000 changes/s held in both of its step runs (benchmarks/results, p99).
GC_FLAG = "-XX:+UseZGC"


def render_server_properties(settings: StackSettings, log_dir: Path) -> str:
    """server.properties of the single-node KRaft broker (static controller quorum)."""
    broker, controller = settings.kafka_port, settings.kafka_controller_port
    props: dict[str, str] = {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.voters": f"{NODE_ID}@{LOOPBACK}:{controller}",
        "listeners": f"PLAINTEXT://{LOOPBACK}:{broker},CONTROLLER://{LOOPBACK}:{controller}",
        "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{broker}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dir),
        **SINGLE_NODE_SETTINGS,
    }
    lines = ["# Written by cdc dev up at every start; edit the dev stack settings instead."]
    lines += [f"{key}={value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def parse_properties(text: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        result[key.strip()] = value.strip()
    return result


def new_cluster_id() -> str:
    """A KRaft cluster id, as `kafka-storage.sh random-uuid` makes it (22 url-safe base64 chars).

    Like Kafka's Uuid.randomUuid, it never starts with "-": the storage tool's argument parser would
    take such an id for an option and refuse to format (one uuid in 64; CI hit it)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def kafka_libs_dir(cache_dir: Path, version: str) -> Path:
    return cache_dir / f"kafka-{version}" / "libs"


def resolve_kafka_jars(cache_dir: Path, version: str, log_file: Path) -> Path:
    """The directory of the broker's jars, downloading them with Maven the first time."""
    libs = kafka_libs_dir(cache_dir, version)
    if (libs / COMPLETE_MARKER).exists():
        return libs
    mvn = find_binary("mvn", MAVEN_PACKAGE)
    work = libs.parent
    work.mkdir(parents=True, exist_ok=True)
    pom = work / "pom.xml"
    pom.write_text(resources.files("cdc.devstack").joinpath("kafka-pom.xml").read_text())
    scratch = work / "libs.downloading"
    shutil.rmtree(scratch, ignore_errors=True)
    what = f"resolving org.apache.kafka:kafka_2.13:{version} and its dependencies with Maven"
    run_logged(
        [
            str(mvn),
            "-B",
            "-q",
            "-f",
            str(pom),
            f"-Dkafka.version={version}",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={scratch}",
        ],
        log_file,
        what,
        cwd=work,
    )
    if not any(scratch.glob(f"kafka_2.13-{version}.jar")):
        tail = log_tail(log_file)
        raise DevStackError(f"{what}: kafka_2.13-{version}.jar did not arrive; see {log_file}:\n{tail}")
    (scratch / COMPLETE_MARKER).write_text(f"org.apache.kafka:kafka_2.13:{version}\n")
    shutil.rmtree(libs, ignore_errors=True)
    scratch.rename(libs)
    return libs


class Kafka(Service):
    name = ServiceName.KAFKA

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.settings.kafka_port, self.settings.kafka_controller_port)

    @property
    def server_properties(self) -> Path:
        return self.home / "server.properties"

    @property
    def log4j_file(self) -> Path:
        return self.home / "log4j2.properties"

    @property
    def cluster_id_file(self) -> Path:
        return self.home / "cluster.id"

    @property
    def libs_dir(self) -> Path:
        return kafka_libs_dir(self.settings.cache_dir, self.settings.kafka_version)

    def cmdline_markers(self) -> tuple[str, ...]:
        return (MAIN_CLASS, str(self.server_properties))

    def java(self) -> Path:
        java_home = os.environ.get("JAVA_HOME")
        candidates = [Path(java_home) / "bin" / "java"] if java_home else []
        return find_binary("java", JAVA_PACKAGE, candidates)

    def cluster_id(self) -> str:
        if self.cluster_id_file.exists():
            stored = self.cluster_id_file.read_text().strip()
            if stored and not stored.startswith("-"):
                return stored
        cluster_id = new_cluster_id()
        self.cluster_id_file.write_text(cluster_id + "\n")
        return cluster_id

    def prepare(self) -> None:
        java = self.java()
        resolve_kafka_jars(self.settings.cache_dir, self.settings.kafka_version, self.log_file)
        self.home.mkdir(parents=True, exist_ok=True)
        self.server_properties.write_text(render_server_properties(self.settings, self.data_dir))
        self.log4j_file.write_text(LOG4J2_PROPERTIES)
        if not (self.data_dir / "meta.properties").exists():
            self._format_storage(java)

    def _format_storage(self, java: Path) -> None:
        """What `kafka-storage.sh format -t <id> -c server.properties` does."""
        shutil.rmtree(self.data_dir, ignore_errors=True)
        run_logged(
            [
                *self._java_prefix(java, heap="256m"),
                STORAGE_TOOL_CLASS,
                "format",
                "-t",
                self.cluster_id(),
                "-c",
                str(self.server_properties),
            ],
            self.log_file,
            "formatting the Kafka storage",
        )

    def _java_prefix(self, java: Path, heap: str) -> list[str]:
        return [
            str(java),
            f"-Xmx{heap}",
            f"-Xms{heap}",
            GC_FLAG,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j_file}",
            f"-Dkafka.logs.dir={self.settings.logs_dir}",
            "-cp",
            f"{self.libs_dir}/*",
        ]

    def argv(self) -> list[str]:
        return [
            *self._java_prefix(self.java(), heap=self.settings.kafka_heap),
            MAIN_CLASS,
            str(self.server_properties),
        ]

    def connection(self) -> KafkaConnection:
        return KafkaConnection(bootstrap_servers=f"{LOOPBACK}:{self.settings.kafka_port}")

    def probe(self) -> None:
        admin = AdminClient(
            {
                "bootstrap.servers": self.connection().bootstrap_servers,
                "socket.connection.setup.timeout.ms": 2000,
                "log_level": 0,  # connection refused while the JVM starts is expected, not news
            }
        )
        metadata = admin.list_topics(timeout=3)
        if not metadata.brokers:
            raise DevStackError("Kafka answered without brokers")

    def after_ready(self) -> None:
        """Up means ready for transactions too.

        The broker answers metadata before its transaction coordinator has loaded, so the first
        transactional producer waits ("Coordinator load in progress"). On a loaded machine that
        took longer than a client's request timeout: a CI run's first 1M-row transaction exited 1.
        `up` returns once a transactional producer can start.
        """
        producer = Producer(
            {
                "bootstrap.servers": self.connection().bootstrap_servers,
                "transactional.id": "headwater-devstack-ready",
                "log_level": 0,  # the coordinator's "load in progress" retries are expected here
            }
        )
        try:
            producer.init_transactions(TRANSACTIONS_READY_S)
        except KafkaException as exc:
            raise DevStackError(
                f"Kafka's transaction coordinator did not come up within {TRANSACTIONS_READY_S}s: {exc}; "
                f"see {self.log_file}"
            ) from exc
