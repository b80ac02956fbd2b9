"""The governance sections of a pipeline config: data-product metadata (`catalog:`), lineage
(`lineage:`) and column policies (`policies:`), issue 12."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from cdc.config.model_base import _check_table_patterns, _Model

# -- data-product metadata and lineage (`catalog:`, `lineage:`; issue 12) -------------------------


class Compatibility(enum.StrEnum):
    """Which table shape changes a table's consumers accept, as a schema registry states it."""

    NONE = "none"  # any change (the default); the catalog still shows each change's class
    BACKWARD = "backward"  # consumers of the new version still read rows of the old one


class OnIncompatible(enum.StrEnum):
    """What `cdc run` does with a change that breaks the table's `compatibility`."""

    STOP = "stop"  # exit 2 naming the table and the change, before writing it; `cdc schema accept`
    FLAG = "flag"  # a WARNING in the log and a mark in `cdc catalog`; the change goes through


class OwnerConfig(_Model):
    team: Annotated[str, Field(min_length=1)]
    contact: str | None = None  # an address or channel people reach the team at


class ProductMetadata(_Model):
    """Who owns data and what it promises; every key optional (a table's keys override the pipeline's)."""

    domain: str | None = None
    owner: OwnerConfig | None = None
    description: str | None = None
    tags: list[str] = []
    classification: str | None = None  # e.g. public, internal, confidential, personal
    freshness_slo_seconds: Annotated[float, Field(gt=0)] | None = None  # the largest lag promised
    compatibility: Compatibility | None = None
    on_incompatible: OnIncompatible | None = None
    # retention of the Iceberg history: changes whose source commit time is older than this many days
    # are deleted, and their files removed from storage, by `cdc maintain` and the daemon's
    # maintenance schedule (docs/governance.md, "Retention"); absent: kept for ever
    history_retention_days: Annotated[float, Field(gt=0, le=36_500)] | None = None


class CatalogConfig(ProductMetadata):
    """``catalog:``: the pipeline's metadata and, per table pattern (db.table, * wildcards), a table's.

    A table takes the pipeline's values, then those of each pattern it matches, in file order.
    """

    tables: dict[str, ProductMetadata] = {}

    @field_validator("tables")
    @classmethod
    def _patterns(cls, value: dict[str, ProductMetadata]) -> dict[str, ProductMetadata]:
        _check_table_patterns(list(value))
        return value


class FileLineageTransport(_Model):
    type: Literal["file"] = "file"
    path: Path  # one JSON event per line, appended


class HttpLineageTransport(_Model):
    type: Literal["http"] = "http"
    url: str  # e.g. http://127.0.0.1:5000 (Marquez)
    endpoint: str = "api/v1/lineage"
    timeout_seconds: Annotated[float, Field(gt=0)] = 5.0
    api_key: SecretStr | None = None


class KafkaLineageTransport(_Model):
    type: Literal["kafka"] = "kafka"
    topic: str
    bootstrap_servers: str
    properties: dict[str, str] = {}


class LineageConfig(_Model):
    """``lineage:``: OpenLineage run events of `cdc run` / `cdc sink` (START, RUNNING, COMPLETE, FAIL)."""

    transport: Annotated[
        FileLineageTransport | HttpLineageTransport | KafkaLineageTransport, Field(discriminator="type")
    ]
    namespace: str = "headwater"  # the jobs' namespace
    running_interval_seconds: Annotated[float, Field(gt=0)] = 60.0


# -- column policies (`policies:`; issue 12, governance) ---------------------------------------------


class ColumnPolicy(enum.StrEnum):
    """What the daemon does to a column's values before any data leaves it (docs/governance.md)."""

    EXCLUDE = "exclude"  # the column is gone from every copy and every schema
    HASH = "hash"  # keyed HMAC-SHA256, 64 hex characters: equal values stay equal, so joins work
    REDACT = "redact"  # every non-NULL value becomes the marker "[redacted]"
    # shape for consumers: BIGINT UNSIGNED presented as a signed bigint (a value above 2^63-1 stops
    # the daemon), so join keys have one type in every copy
    BIGINT = "bigint"


class TruncatePolicy(_Model):
    """``{truncate: N}``: the first N characters (text) or bytes (binary) of each value."""

    truncate: Annotated[int, Field(ge=1, le=1_000_000)]


class TextPolicy(_Model):
    """``{text: error|replace}``: a binary column presented as UTF-8 text (MediaWiki's VARBINARY titles).

    An invalid UTF-8 sequence stops the daemon (``error``, naming table and column) or becomes U+FFFD
    (``replace``; not allowed on key columns, where two keys could become one).
    """

    text: Literal["error", "replace"]


ColumnRule = ColumnPolicy | TruncatePolicy | TextPolicy


class PoliciesConfig(_Model):
    """``policies:``: per table pattern (db.table, * wildcards), per column pattern (* wildcards), a policy.

    A column takes the policy of the first pattern that matches it, tables and columns in file order.
    """

    # the NAME of the environment variable that holds the HMAC key (never the key itself)
    hash_key_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    tables: dict[str, dict[str, ColumnRule]] = {}

    @field_validator("tables")
    @classmethod
    def _patterns(cls, value: dict[str, dict[str, ColumnRule]]) -> dict[str, dict[str, ColumnRule]]:
        _check_table_patterns(list(value))
        for table, columns in value.items():
            if not columns or any(not name.strip() for name in columns):
                raise ValueError(f"{table}: give at least one column pattern, e.g. {{email: hash}}")
        return value

    @model_validator(mode="after")
    def _hash_needs_key(self) -> PoliciesConfig:
        hashed = [
            f"{t}.{c}" for t, cols in self.tables.items() for c, p in cols.items() if p is ColumnPolicy.HASH
        ]
        if hashed and self.hash_key_env is None:
            raise ValueError(
                f"{hashed[0]} is hashed: set hash_key_env to the name of the environment variable "
                "that holds the HMAC key"
            )
        return self
