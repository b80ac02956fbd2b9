"""`history_retention_days`: where it goes in the config, how it resolves per table, what errors say."""

from __future__ import annotations

import datetime as dt

import pytest

from cdc.catalog.metadata import table_product
from cdc.config import parse_config
from cdc.core.errors import ConfigError

BASE = """
name: wiki
source: {user: cdc, server_id: 5401, tables: ["wikidb.*"]}
"""


def test_retention_resolves_pipeline_then_each_matching_pattern() -> None:
    config = parse_config(
        BASE
        + """
catalog:
  history_retention_days: 365
  tables:
    "wikidb.user*": {history_retention_days: 90, classification: personal}
    "wikidb.user_newtalk": {history_retention_days: 7.5}
""",
        {},
    )
    assert table_product(config.catalog, "wikidb", "page").history_retention_days == 365
    assert table_product(config.catalog, "wikidb", "user").history_retention_days == 90
    assert table_product(config.catalog, "wikidb", "user_newtalk").retention == dt.timedelta(days=7.5)
    assert table_product(None, "wikidb", "page").retention is None


@pytest.mark.parametrize(
    ("section", "named"),
    [
        ("catalog: {history_retention_days: 0}", "catalog.history_retention_days: must be > 0"),
        ('catalog: {tables: {"w.p": {history_retention_days: 90d}}}', "expected a number, got '90d'"),
        ('catalog: {tables: {"w.p": {history_retention_days: -1}}}', "must be > 0.0, got -1"),
        ('catalog: {tables: {"w.p": {retention: 90}}}', "catalog.tables.w.p.retention"),
    ],
)
def test_retention_errors_name_the_key(section: str, named: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(BASE + section, {})
    assert named in str(err.value)
