"""The typed pipeline configuration: one file per source database (DESIGN.md, "Contracts").

Models are frozen and reject unknown keys; the loader (``cdc.config.loader``) turns YAML into these
and turns validation failures into messages that name the key path. Secrets are ``SecretStr`` (or a
URL whose password is masked) so that printing a config never shows them.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from cdc.config.governance_models import (
    CatalogConfig,
    ColumnPolicy,
    ColumnRule,
    Compatibility,
    FileLineageTransport,
    HttpLineageTransport,
    KafkaLineageTransport,
    LineageConfig,
    OnIncompatible,
    OwnerConfig,
    PoliciesConfig,
    ProductMetadata,
    TextPolicy,
    TruncatePolicy,
)
from cdc.config.model_base import NAME_PATTERN, TABLE_PATTERN, _check_table_patterns, _Model

# the governance sections (catalog, lineage, policies) are defined in governance_models.py and
# exported from here too, where the rest of the code imports every config model from
__all__ = [
    "NAME_PATTERN",
    "TABLE_PATTERN",
    "BatchConfig",
    "BootstrapConfig",
    "BootstrapMode",
    "CatalogConfig",
    "ColumnPolicy",
    "ColumnRule",
    "Compatibility",
    "FileLineageTransport",
    "HttpLineageTransport",
    "IcebergSinkConfig",
    "KafkaLineageTransport",
    "KafkaStreamConfig",
    "LineageConfig",
    "MariaDbSourceConfig",
    "MetricsConfig",
    "OnIncompatible",
    "OwnerConfig",
    "PipelineConfig",
    "PoliciesConfig",
    "PostgresSourceConfig",
    "ProductMetadata",
    "ReconcileScheduleConfig",
    "SchemaChangePolicy",
    "SecretUrl",
    "SourceSslConfig",
    "SqlSinkConfig",
    "TextPolicy",
    "TruncatePolicy",
    "ZeroDatePolicy",
    "_SinkModel",
    "mask_url_password",
]


class ZeroDatePolicy(enum.StrEnum):
    """What a zero date (``0000-00-00``) or a zero part in a DATE/DATETIME becomes."""

    NULL = "null"  # the default: consumers see a missing value, as Debezium does
    ERROR = "error"  # stop with an error naming db.table.column
    STRING = "string"  # keep the source text, e.g. "0000-00-00 00:00:00"


class SourceSslConfig(_Model):
    """TLS to the source database (MariaDB ``ssl_ca``/``ssl_cert``/``ssl_key``)."""

    ca: Path | None = None  # CA certificate (PEM) the server's certificate must chain to
    cert: Path | None = None  # client certificate (PEM), for servers that require X509
    key: Path | None = None  # the client certificate's private key (PEM)
    # check the server certificate against `ca` and its host name against `host`; false encrypts only
    verify: bool = True


class MariaDbSourceConfig(_Model):
    type: Literal["mariadb"] = "mariadb"
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 3306
    user: str
    password: SecretStr = SecretStr("")
    server_id: Annotated[int, Field(ge=1, le=2**32 - 1)]
    tables: Annotated[list[str], Field(min_length=1)] = ["*.*"]
    exclude_tables: list[str] = []
    zero_dates: ZeroDatePolicy = ZeroDatePolicy.NULL
    heartbeat_seconds: Annotated[float, Field(gt=0, le=3600)] = 5.0
    connect_timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 10.0
    ssl: SourceSslConfig | None = None  # absent: plain TCP

    @field_validator("tables", "exclude_tables")
    @classmethod
    def _db_dot_table(cls, patterns: list[str]) -> list[str]:
        return _check_table_patterns(patterns)


class PostgresSourceConfig(_Model):
    """A PostgreSQL database read through logical replication (pgoutput); docs/postgresql.md."""

    type: Literal["postgresql"] = "postgresql"
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 5432
    user: str  # needs LOGIN and REPLICATION (and SELECT on the captured tables for bootstraps)
    password: SecretStr = SecretStr("")
    database: str  # logical decoding reads one database
    # the replication slot (default headwater_<pipeline name>) and the publication it reads
    slot: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,63}$")] | None = None
    publication: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,63}$")] = "headwater"
    # create the slot (first start only) / the publication (FOR ALL TABLES) when missing; false:
    # a DBA creates them (docs/postgresql.md) and a missing one stops the daemon, naming it
    create_slot: bool = True
    create_publication: bool = True
    tables: Annotated[list[str], Field(min_length=1)] = ["public.*"]  # schema.table patterns
    exclude_tables: list[str] = []
    heartbeat_seconds: Annotated[float, Field(gt=0, le=3600)] = 5.0
    connect_timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 10.0
    server_id: int = 0  # unused by PostgreSQL; kept so checkpoints record the same fields

    @field_validator("tables", "exclude_tables")
    @classmethod
    def _schema_dot_table(cls, patterns: list[str]) -> list[str]:
        return _check_table_patterns(patterns)


class KafkaStreamConfig(_Model):
    type: Literal["kafka"] = "kafka"
    bootstrap_servers: str
    partitions: Annotated[int, Field(ge=1, le=10_000)] = 1
    replication_factor: Annotated[int, Field(ge=1, le=32)] = 1
    # A Kafka transaction of `cdc run` is committed at a source transaction's end once it holds this
    # many events or is this old; caught up, capture commits as soon as the source is quiet anyway.
    # Behind (a backlog of 1000-row statements), 10,000 events made a commit every ~65 ms, each ~12-25
    # ms of waiting for the broker with the reading thread stalled too (a quarter of the wall); at
    # 100,000 the 200 ms limit decides: a third of the commits (benchmarks/results/latest.md, capflow).
    flush_max_events: Annotated[int, Field(ge=1)] = 100_000
    flush_max_ms: Annotated[int, Field(ge=1)] = 200
    transaction_metadata: bool = False
    # a delete is followed by a tombstone (key, null value) so that compacted topics drop the key
    tombstones_on_delete: bool = True
    # how long one Kafka transaction may stay open; brokers cap it (transaction.max.timeout.ms, 15 min)
    transaction_timeout_ms: Annotated[int, Field(ge=1_000, le=3_600_000)] = 600_000
    # metadata, init_transactions, commit and checkpoint reads give up (TransientError) after this
    request_timeout_ms: Annotated[int, Field(ge=100, le=600_000)] = 30_000
    # `cdc sink`'s consumer group (default headwater-<name>-sink). Processes in one group share the
    # partitions, so they must run the same sinks: give each differently-configured set of sinks
    # (say one config per serving database) its own group.
    consumer_group: str | None = None
    # the largest change message (one row's envelope) the stream carries: topics are created with
    # max.message.bytes and the producer is configured for it; a larger row stops capture, naming
    # the table, the key and the size
    max_message_bytes: Annotated[int, Field(ge=1_048_576, le=268_435_456)] = 16_777_216
    # librdkafka properties passed through as they are (security.protocol, sasl.*...)
    properties: dict[str, str] = {}

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_port_list(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...], got {server.strip()!r}")
        return value


def mask_url_password(url: str) -> str:
    """``postgresql://u:secret@h/db`` -> ``postgresql://u:***@h/db``; other URLs unchanged."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostinfo}"))


class SecretUrl(str):
    """A database URL that may carry a password: shown masked, used whole."""

    def __repr__(self) -> str:
        return repr(mask_url_password(str(self)))

    @property
    def masked(self) -> str:
        return mask_url_password(str(self))


class SchemaChangePolicy(enum.StrEnum):
    """What a sink does when a source table's shape changes (column added, dropped, renamed, widened)."""

    APPLY = "apply"  # follow the change (the default): the pipeline keeps running, nothing is lost
    STOP = "stop"  # stop before applying it, naming table and change; `cdc schema accept` lets it through


class _SinkModel(_Model):
    """Keys every sink type has."""

    # how `cdc status`, `cdc sink --sink`, `cdc schema` name this sink; default: its type, numbered
    # when the pipeline has several of one type ("sql", "sql-2", "iceberg")
    name: Annotated[str, Field(pattern=NAME_PATTERN)] | None = None
    # which of the pipeline's tables this sink receives (patterns db.table, * wildcards)
    tables: list[str] = ["*.*"]
    exclude_tables: list[str] = []
    schema_changes: SchemaChangePolicy = SchemaChangePolicy.APPLY

    @field_validator("tables", "exclude_tables")
    @classmethod
    def _db_dot_table(cls, patterns: list[str]) -> list[str]:
        return _check_table_patterns(patterns)


class SqlSinkConfig(_SinkModel):
    type: Literal["sql"] = "sql"
    url: str
    table: str = "{table}"
    schema_name: str | None = Field(default=None, alias="schema")
    batch_rows: Annotated[int, Field(ge=1)] = 5_000
    on_bad_row: Literal["stop", "dead_letter"] = "stop"
    # a batch of this many rows or more goes column-wise: PostgreSQL COPY + one INSERT ... SELECT;
    # from Kafka (`cdc sink`) also SQLite and MariaDB (one executemany each way). 100, not 1,000:
    # measured on PostgreSQL, the column-wise path is no slower from 150 changes up and faster above
    # (embedded batches of 500: 40-44k rows/s against 31-32k), and from Kafka at 10k changes/s
    # batches of 100-999 changes no longer take the slower per-change path: end-to-end p50 65 -> 38
    # and 103 -> 53 ms, p99 220 -> 166 and 573 -> 437 ms (benchmarks/results/latest.md)
    copy_threshold_rows: Annotated[int, Field(ge=1)] = 100
    # tables without a primary key: the columns that identify a row in the serving table, per
    # "db.table" (exact name). A keyless table not listed here that the sink never served is skipped
    # (an ERROR naming it once per run; the other tables go on); a served table that loses its key
    # stops the sink (exit 2) until key_columns name a key for it and the change is accepted
    key_columns: dict[str, list[str]] = {}
    # SQLite only: "auto" puts a database file the sink creates in WAL mode (a commit appends to
    # the -wal file instead of making, syncing and deleting a journal; readers never block the
    # sink) and leaves an existing file's mode alone; "wal" switches an existing file too; "keep"
    # never changes it
    sqlite_journal: Literal["auto", "wal", "keep"] = "auto"

    @field_validator("url")
    @classmethod
    def _sqlalchemy_url(cls, value: str) -> str:
        if "://" not in value:
            raise ValueError("expected a SQLAlchemy URL such as sqlite:///state/serving.db")
        return SecretUrl(value)

    @field_validator("table")
    @classmethod
    def _table_format(cls, value: str) -> str:
        try:
            value.format(table="t", db="d")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"table name format may use only {{table}} and {{db}}, got {value!r}") from exc
        return value


class IcebergSinkConfig(_SinkModel):
    type: Literal["iceberg"] = "iceberg"
    # pyiceberg catalog properties as they are: {type: sql, uri: ..., warehouse: ...} or {type: rest, ...}
    catalog: dict[str, str]
    namespace: str
    commit_rows: Annotated[int, Field(ge=1)] = 100_000
    commit_seconds: Annotated[float, Field(gt=0)] = 30.0
    # `cdc maintain`: expire snapshots older than this many days (default 1 hour), always keeping the
    # last few. Short because every commit costs ~0.17 ms of CPU per snapshot the table holds (one per
    # commit): 7 days at one commit a 30 s were ~20k snapshots, seconds a commit. Nothing Headwater
    # reads needs old snapshots (`cdc history --at` reads rows; the sink's state is in the newest).
    maintenance_older_than_days: Annotated[float, Field(gt=0)] = 1 / 24
    maintenance_retain_last: Annotated[int, Field(ge=1)] = 5
    # the daemon (`cdc run` in embedded mode, `cdc sink`) runs maintenance this often; 0 = only `cdc maintain`
    maintenance_interval_hours: Annotated[float, Field(ge=0)] = 1.0
    # a history table's snapshots, whatever their age: past this many (plus a tenth), the sink expires the
    # oldest after a commit, and maintenance does too, so that commits by `commit_rows` (one a second when
    # busy: ~7,200 snapshots by the hourly expiry) cost no more than ones every 30 s
    # (sinks.iceberg.snapshot_bound)
    max_snapshots: Annotated[int, Field(ge=1)] = 250

    @field_validator("catalog")
    @classmethod
    def _catalog_type(cls, value: dict[str, str]) -> dict[str, str]:
        if value.get("type") not in {"sql", "rest"}:
            raise ValueError(f"catalog.type must be 'sql' or 'rest', got {value.get('type')!r}")
        return value

    def __repr_args__(self):  # type: ignore[no-untyped-def]
        for key, value in super().__repr_args__():
            if key == "catalog":
                value = {k: _mask_property(k, v) for k, v in value.items()}
            yield key, value


def _mask_property(key: str, value: str) -> str:
    if any(word in key.lower() for word in SECRET_WORDS):
        return "***"
    return mask_url_password(value) if "://" in value else value


SECRET_WORDS = ("password", "secret", "token", "credential", "sasl.password", "key")

SinkConfig = SqlSinkConfig | IcebergSinkConfig
SINK_CONFIG_TYPES: dict[str, type[SqlSinkConfig] | type[IcebergSinkConfig]] = {
    "sql": SqlSinkConfig,
    "iceberg": IcebergSinkConfig,
}


class BatchConfig(_Model):
    """Embedded mode: how the daemon groups changes into sink batches."""

    max_events: Annotated[int, Field(ge=1)] = 10_000
    max_ms: Annotated[int, Field(ge=1)] = 200
    # an idle source still gets buffered sink data (Iceberg) committed this often
    idle_flush_seconds: Annotated[float, Field(gt=0)] = 10.0


class BootstrapMode(enum.StrEnum):
    """When `cdc run` bootstraps tables by itself (`cdc bootstrap` works in every mode)."""

    NEVER = "never"  # only changes made after the first start; `cdc bootstrap` fills in the rest
    INITIAL = "initial"  # every captured table on the first start, and each table captured later
    WHEN_NEEDED = "when_needed"  # as initial; and again, afresh, when the checkpoint's binlog is gone


class BootstrapConfig(_Model):
    mode: BootstrapMode = BootstrapMode.NEVER
    # chunks adapt toward this many seconds of reading each, within [min_chunk_rows, max_chunk_rows]
    chunk_seconds: Annotated[float, Field(gt=0, le=60)] = 0.5
    min_chunk_rows: Annotated[int, Field(ge=1)] = 500
    max_chunk_rows: Annotated[int, Field(ge=1, le=10_000_000)] = 100_000


class MetricsConfig(_Model):
    """`cdc run` / `cdc sink` serve Prometheus metrics, /healthz and /readyz over HTTP here."""

    # loopback by default: the endpoint has no authentication
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 9464
    # /healthz fails when the daemon's loop has not ticked for this long (a hung process)
    liveness_seconds: Annotated[float, Field(gt=0, le=3600)] = 60.0


class ReconcileScheduleConfig(_Model):
    """`cdc run` reconciles on a schedule (besides `cdc reconcile` on demand)."""

    schedule: str  # a crontab line: minute hour day-of-month month day-of-week, e.g. "0 3 * * *"
    tables: list[str] = []  # db.table names; empty: every captured table
    repair: bool = False  # send the repairs through the stream when drift is found

    @field_validator("schedule")
    @classmethod
    def _crontab(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value)
        except ValueError as exc:
            raise ValueError(f"not a crontab schedule ({exc}); e.g. '0 3 * * *' for 03:00 daily") from exc
        return value


class PipelineConfig(_Model):
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    # `source:` in the file. Read through `source` (a MariaDB source; what every command but `cdc run`
    # reads today) or `any_source` (either type): a PostgreSQL pipeline given to a command that
    # reads MariaDB only is refused with an error naming the key, not with a MariaDB driver's error.
    source_config: Annotated[MariaDbSourceConfig | PostgresSourceConfig, Field(alias="source")]
    stream: KafkaStreamConfig | None = None
    sinks: list[SqlSinkConfig | IcebergSinkConfig] = []
    batch: BatchConfig = BatchConfig()
    bootstrap: BootstrapConfig = BootstrapConfig()
    reconcile: ReconcileScheduleConfig | None = None
    state_dir: Path = Path("state")
    metrics: MetricsConfig | None = None  # absent: no metrics endpoint
    catalog: CatalogConfig | None = None  # data-product metadata: owner, SLO, compatibility
    lineage: LineageConfig | None = None  # OpenLineage run events; absent: none
    policies: PoliciesConfig | None = None  # column policies applied before data leaves the daemon

    @field_validator("source_config", mode="wrap")
    @classmethod
    def _source_by_type(cls, value: object, handler: object) -> object:
        # by `type` (default mariadb), so that errors name `source.<key>`, not a union member
        if isinstance(value, MariaDbSourceConfig | PostgresSourceConfig):
            return value
        if isinstance(value, dict) and value.get("type") == "postgresql":
            return PostgresSourceConfig.model_validate(value)
        return MariaDbSourceConfig.model_validate(value)

    @property
    def source(self) -> MariaDbSourceConfig:
        """The MariaDB source; ConfigError for a PostgreSQL one (commands not built for it yet)."""
        if isinstance(self.source_config, MariaDbSourceConfig):
            return self.source_config
        from cdc.core.errors import ConfigError  # the vocabulary's error, not pydantic's

        raise ConfigError(
            "source.type: postgresql is captured by `cdc run` and consumed by `cdc sink`; this "
            "command reads MariaDB sources only so far (docs/postgresql.md, limits)"
        )

    @property
    def any_source(self) -> MariaDbSourceConfig | PostgresSourceConfig:
        return self.source_config

    @property
    def embedded(self) -> bool:
        """No stream configured: `cdc run` applies changes straight to the sinks."""
        return self.stream is None

    @property
    def sink_names(self) -> tuple[str, ...]:
        """Each sink's name, in ``sinks`` order (its ``name``, else its type, numbered if repeated)."""
        names: list[str] = []
        counts: dict[str, int] = {}
        for sink in self.sinks:
            if sink.name is not None:
                names.append(sink.name)
                continue
            counts[sink.type] = counts.get(sink.type, 0) + 1
            n = counts[sink.type]
            names.append(sink.type if n == 1 else f"{sink.type}-{n}")
        return tuple(names)

    @model_validator(mode="after")
    def _unique_sink_names(self) -> PipelineConfig:
        names = self.sink_names
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"sinks: two sinks are named {repeated[0]!r}; give each sink its own `name`")
        return self
