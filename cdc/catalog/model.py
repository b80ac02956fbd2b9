"""What `cdc catalog` shows: per pipeline, per table. Serialized only at the edge (JSON, HTML)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from cdc.catalog.metadata import TableProduct
from cdc.catalog.schema_history import SchemaVersion

__all__ = ["CatalogEntry", "CopyView", "PipelineView", "catalog_json"]


@dataclass(frozen=True, slots=True)
class CopyView:
    """One place the table's data lands: a Kafka topic, a history table, a serving table."""

    kind: str  # "topic" | "history" | "serving"
    sink: str  # the sink's name ("" for the topic)
    name: str  # topic name, Iceberg identifier, or SQL table (with its masked database URL)
    rows: int | None  # rows it holds (Iceberg: history rows), None if unknown
    lag_seconds: float | None  # the sink's lag (status), None if unknown
    error: str | None = None


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    pipeline: str
    table: str  # db.table
    product: TableProduct
    source: str  # mariadb://host:port/db.table
    source_rows: int | None  # the server's estimate (information_schema.TABLES.TABLE_ROWS)
    copies: tuple[CopyView, ...]
    versions: tuple[SchemaVersion, ...]
    lag_seconds: float | None  # the largest lag among the copies that have one
    last_bootstrap: str  # "never", "reading (1200 rows)", "finished 2026-... (1200 rows)", "refused: ..."
    last_reconciliation: str  # "never" or "match at ...", per copy

    @property
    def slo_state(self) -> str:
        """ "met", "missed", "unknown" (no lag known) or "none" (no SLO declared)."""
        slo = self.product.freshness_slo_seconds
        if slo is None:
            return "none"
        if self.lag_seconds is None:
            return "unknown"
        return "met" if self.lag_seconds <= slo else "missed"

    @property
    def compatibility_flags(self) -> tuple[SchemaVersion, ...]:
        """Versions whose change breaks the table's policy (let through under flag, or held)."""
        if self.product.compatibility.value != "backward":
            return ()
        return tuple(v for v in self.versions if v.compatibility == "breaking")

    @property
    def lineage(self) -> tuple[str, ...]:
        return (self.source, *(f"{c.kind}:{c.name}" for c in self.copies))

    def to_json(self) -> dict[str, object]:
        p = self.product
        return {
            "pipeline": self.pipeline,
            "table": self.table,
            "domain": p.domain,
            "owner": {"team": p.owner_team, "contact": p.owner_contact} if p.owner_team else None,
            "description": p.description,
            "tags": list(p.tags),
            "classification": p.classification,
            "freshness_slo_seconds": p.freshness_slo_seconds,
            "history_retention_days": p.history_retention_days,
            "lag_seconds": self.lag_seconds,
            "slo": self.slo_state,
            "compatibility": p.compatibility.value,
            "on_incompatible": p.on_incompatible.value,
            "lineage": {
                "source": self.source,
                "copies": [
                    {
                        "kind": c.kind,
                        "sink": c.sink,
                        "name": c.name,
                        "rows": c.rows,
                        "lag_seconds": c.lag_seconds,
                        "error": c.error,
                    }
                    for c in self.copies
                ],
            },
            "source_rows_estimate": self.source_rows,
            "schema_versions": [
                {
                    "version": v.version,
                    "first_position": v.position,
                    "columns": [
                        {"name": c.name, "source_type": c.source_type, "nullable": c.nullable}
                        for c in v.schema.columns
                    ],
                    "primary_key": list(v.schema.primary_key),
                    "change": v.change or None,
                    "compatibility": v.compatibility or None,
                    "breaking": v.breaking or None,
                    "held": v.held,
                    "json_schema": json.loads(v.value_schema),
                }
                for v in self.versions
            ],
            "last_bootstrap": self.last_bootstrap,
            "last_reconciliation": self.last_reconciliation,
        }


@dataclass(frozen=True, slots=True)
class PipelineView:
    name: str
    mode: str  # "embedded" | "kafka"
    source: str
    tables: tuple[CatalogEntry, ...]
    problems: tuple[str, ...]  # what could not be read (source down, topic unreadable...)


def catalog_json(pipelines: tuple[PipelineView, ...]) -> str:
    return json.dumps(
        {
            "pipelines": [
                {
                    "name": p.name,
                    "mode": p.mode,
                    "source": p.source,
                    "problems": list(p.problems),
                    "tables": [t.to_json() for t in p.tables],
                }
                for p in pipelines
            ]
        },
        indent=2,
    )
