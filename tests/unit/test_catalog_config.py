"""`catalog:` and `lineage:` config sections, a table's resolved metadata, and change classification."""

from __future__ import annotations

import pytest

from cdc.catalog.metadata import table_product
from cdc.config import parse_config
from cdc.config.models import Compatibility, OnIncompatible
from cdc.core.errors import ConfigError
from cdc.core.schema_compatibility import classify_diff
from cdc.core.schema_evolution import diff_schemas
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema

BASE = """
name: wiki
source: {user: cdc, server_id: 4801, tables: ["wikidb.*"]}
"""

CATALOG = (
    BASE
    + """
catalog:
  domain: knowledge
  owner: {team: wiki-core, contact: core@example.org}
  description: The wiki's pages and revisions
  tags: [wiki]
  freshness_slo_seconds: 300
  tables:
    "wikidb.*": {classification: internal}
    "wikidb.page": {owner: {team: pages}, compatibility: backward, freshness_slo_seconds: 60}
lineage:
  transport: {type: file, path: /tmp/lineage.jsonl}
  running_interval_seconds: 5
"""
)


def test_metadata_resolves_pipeline_then_each_matching_pattern() -> None:
    config = parse_config(CATALOG, {})
    page = table_product(config.catalog, "wikidb", "page")
    assert page.owner == "pages"  # the table's owner replaces the pipeline's whole
    assert (page.domain, page.classification, page.tags) == ("knowledge", "internal", ("wiki",))
    assert page.freshness_slo_seconds == 60
    assert page.compatibility is Compatibility.BACKWARD and page.on_incompatible is OnIncompatible.STOP
    rev = table_product(config.catalog, "wikidb", "revision")
    assert rev.owner == "wiki-core <core@example.org>" and rev.freshness_slo_seconds == 300
    assert rev.compatibility is Compatibility.NONE
    assert config.lineage is not None and config.lineage.transport.type == "file"
    assert table_product(None, "a", "b").owner is None


@pytest.mark.parametrize(
    ("section", "named"),
    [
        ('catalog: {tables: {"page": {}}}', "catalog.tables: table pattern 'page'"),
        ('catalog: {tables: {"w.p": {compatibility: forward}}}', "catalog.tables.w.p.compatibility"),
        ("catalog: {owner: {contact: x}}", "catalog.owner.team: is required"),
        ("catalog: {freshness_slo_seconds: 0}", "catalog.freshness_slo_seconds"),
        ("lineage: {transport: {type: ftp}}", "lineage.transport"),
        ("lineage: {transport: {type: file}}", "lineage.transport.file.path"),
    ],
)
def test_errors_name_the_key(section: str, named: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(BASE + section + "\n", {})
    assert named in str(info.value)


def _col(name: str, source: str, kind: ArrowKind, nullable: bool = True, p: int = 0, s: int = 0) -> Column:
    return Column(name, source, ArrowType(kind, p, s), nullable)


ID = _col("id", "int", ArrowKind.INT32, False)
TITLE = _col("title", "varchar(20)", ArrowKind.STRING)


def _classify(before: tuple[Column, ...], after: tuple[Column, ...]) -> tuple[bool, str]:
    ref = TableRef("d", "t")
    verdict = classify_diff(
        diff_schemas(TableSchema.build(ref, before, ("id",)), TableSchema.build(ref, after, ("id",)))
    )
    return verdict.backward, verdict.describe_breaking()


@pytest.mark.parametrize(
    ("after", "backward"),
    [
        ((ID, TITLE, _col("note", "text", ArrowKind.STRING)), True),  # add nullable
        ((ID, TITLE, _col("n", "int", ArrowKind.INT32, False)), False),  # add NOT NULL
        ((ID,), False),  # drop
        ((ID, _col("name", "varchar(20)", ArrowKind.STRING)), False),  # rename
        ((ID, _col("title", "varchar(40)", ArrowKind.STRING)), True),  # longer
        ((ID, _col("title", "varchar(10)", ArrowKind.STRING)), False),  # shorter
        ((ID, _col("title", "text", ArrowKind.STRING)), True),
        ((ID, _col("title", "varchar(20)", ArrowKind.STRING, False)), False),  # to NOT NULL
        ((_col("id", "bigint", ArrowKind.INT64, False), TITLE), True),  # wider integer
        ((_col("id", "smallint", ArrowKind.INT16, False), TITLE), False),  # narrower
        ((_col("id", "int unsigned", ArrowKind.UINT32, False), TITLE), False),  # no negatives
        ((ID, _col("title", "int", ArrowKind.INT32)), False),  # another family
    ],
)
def test_classification_as_a_registry_would(after: tuple[Column, ...], backward: bool) -> None:
    verdict, why = _classify((ID, TITLE), after)
    assert verdict is backward, why


def test_decimal_and_enum_widening() -> None:
    dec = _col("v", "decimal(10,2)", ArrowKind.DECIMAL, p=10, s=2)
    assert _classify((ID, dec), (ID, _col("v", "decimal(12,3)", ArrowKind.DECIMAL, p=12, s=3)))[0]
    assert not _classify((ID, dec), (ID, _col("v", "decimal(10,3)", ArrowKind.DECIMAL, p=10, s=3)))[0]
    enum = _col("e", "enum('a','b')", ArrowKind.STRING)
    assert _classify((ID, enum), (ID, _col("e", "enum('a','b','c')", ArrowKind.STRING)))[0]
    backward, why = _classify((ID, enum), (ID, _col("e", "enum('a')", ArrowKind.STRING)))
    assert not backward and "members removed" in why
