"""The Iceberg history sink with its SQL catalog on the dev stack's PostgreSQL (data files on disk)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdc.config.models import IcebergSinkConfig
from cdc.core.events import Op
from cdc.devstack.connections import StackConnections, default_state_dir
from cdc.devstack.settings import StackSettings
from cdc.devstack.stack import DevStack
from sinks.contract import AppliedState
from sinks.iceberg import create_iceberg_sink, maintain, state_as_of
from tests.unit.test_iceberg_sink import batch, event, pos, schema


@pytest.fixture(scope="module")
def postgres_url() -> str:
    """The running dev stack's PostgreSQL (`cdc dev up`); only PostgreSQL is needed here."""
    connections: StackConnections = DevStack(StackSettings(state_dir=default_state_dir())).connections()
    return connections.postgres.sqlalchemy_url()


def test_history_on_a_postgresql_sql_catalog(postgres_url: str, tmp_path: Path) -> None:
    url = postgres_url
    name = f"hw_test_{uuid.uuid4().hex[:12]}"  # a catalog of its own: rows keyed by catalog_name
    config = IcebergSinkConfig(
        catalog={"type": "sql", "name": name, "uri": url, "warehouse": str(tmp_path / "wh")},
        namespace="hist",
        commit_rows=2,
    )
    s = schema()
    sink = create_iceberg_sink(config, "pg")
    sink.open()
    try:
        sink.apply(batch(event(Op.CREATE, s, 1, (1, "a")), event(Op.CREATE, s, 2, (2, "b"))))
        sink.apply(batch(event(Op.UPDATE, s, 3, (1, "a2")), event(Op.DELETE, s, 4, (2, "b"))))
    finally:
        sink.close()
    restarted = create_iceberg_sink(config, "pg")
    restarted.open()
    try:
        assert restarted.applied() == AppliedState(pos(4))
    finally:
        restarted.close()
    state = state_as_of(config.catalog, "hist", "shop.items", pos(4))
    assert state.to_pylist() == [{"id": 1, "name": "a2"}]
    report = maintain(config, "pg")
    assert {t.identifier for t in report.tables} == {"hist.items__history", "hist._headwater_progress__pg"}
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            count = conn.execute(
                sa.text("select count(*) from iceberg_tables where catalog_name = :n"), {"n": name}
            ).scalar_one()
            assert count == 2
            conn.execute(sa.text("delete from iceberg_tables where catalog_name = :n"), {"n": name})
            conn.execute(
                sa.text("delete from iceberg_namespace_properties where catalog_name = :n"), {"n": name}
            )
    finally:
        engine.dispose()
