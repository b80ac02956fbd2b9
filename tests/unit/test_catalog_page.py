"""The catalog's pure parts: SLO state, breaking-change flags, the HTML page (escaped, no script)."""

from __future__ import annotations

import json

from cdc.catalog.html_page import render_html
from cdc.catalog.metadata import TableProduct
from cdc.catalog.model import CatalogEntry, CopyView, PipelineView, catalog_json
from cdc.catalog.schema_history import SchemaVersion
from cdc.config.models import Compatibility
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema

SCHEMA = TableSchema.build(
    TableRef("w", "page"), (Column("id", "int", ArrowType(ArrowKind.INT32), False),), ("id",)
)


def entry(
    slo: float | None, lag: float | None, compat: Compatibility, change_class: str = ""
) -> CatalogEntry:
    product = TableProduct(
        owner_team="<b>pages</b>",
        description="<script>alert(1)</script>",
        freshness_slo_seconds=slo,
        compatibility=compat,
    )
    versions = (
        SchemaVersion(SCHEMA.version, "mdb1:x", SCHEMA, "{}", "drop t", change_class, "drop t (why)"),
    )
    copies = (
        CopyView("topic", "", "p.w.page", None, lag),
        CopyView("serving", "sql", "sqlite:///s.db#page", 3, lag),
    )
    return CatalogEntry(
        "p", "w.page", product, "mariadb://h:1/w.page", 3, copies, versions, lag, "never", "never"
    )


def test_slo_state_and_flags() -> None:
    assert entry(60, 10, Compatibility.NONE).slo_state == "met"
    assert entry(60, 61, Compatibility.NONE).slo_state == "missed"
    assert entry(60, None, Compatibility.NONE).slo_state == "unknown"
    assert entry(None, 5, Compatibility.NONE).slo_state == "none"
    assert entry(None, 5, Compatibility.BACKWARD, "breaking").compatibility_flags
    assert not entry(None, 5, Compatibility.NONE, "breaking").compatibility_flags
    assert entry(None, 5, Compatibility.NONE).lineage == (
        "mariadb://h:1/w.page",
        "topic:p.w.page",
        "serving:sqlite:///s.db#page",
    )


def test_html_page_escapes_everything_and_has_no_script() -> None:
    view = PipelineView(
        "p", "kafka", "h:1", (entry(60, 10, Compatibility.BACKWARD, "breaking"),), ("source: <down>",)
    )
    page = render_html((view,))
    assert "<script" not in page and "&lt;script&gt;" in page and "&lt;b&gt;pages&lt;/b&gt;" in page
    assert "&lt;down&gt;" in page and "(1 breaking)" in page and "10s (SLO met)" in page
    doc = json.loads(catalog_json((view,)))
    assert doc["pipelines"][0]["tables"][0]["slo"] == "met"
