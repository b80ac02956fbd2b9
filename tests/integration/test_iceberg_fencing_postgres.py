"""Writer fencing with the Iceberg catalog on the dev stack's PostgreSQL, as two hosts would share it.

The conditional commits rest on the catalog's compare-and-swap of the metadata pointer; these runs
use the same scenarios as tests/unit/test_iceberg_fencing.py, with a PostgreSQL SQL catalog.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdc.config.models import IcebergSinkConfig
from cdc.devstack.connections import StackConnections, default_state_dir
from cdc.devstack.settings import StackSettings
from cdc.devstack.stack import DevStack
from tests.unit import test_iceberg_fencing as scenarios


@pytest.fixture
def on_postgres(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    connections: StackConnections = DevStack(StackSettings(state_dir=default_state_dir())).connections()
    url = connections.postgres.sqlalchemy_url()
    name = f"iceberg_fence_{uuid.uuid4().hex[:10]}"  # a catalog of its own: rows keyed by catalog_name

    def config(_tmp: Path) -> IcebergSinkConfig:
        return IcebergSinkConfig(
            catalog={"type": "sql", "name": name, "uri": url, "warehouse": str(tmp_path / "wh")},
            namespace="fence",
            commit_rows=1000,
            commit_seconds=3600,
        )

    monkeypatch.setattr(scenarios, "_config", config)
    yield
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for table in ("iceberg_tables", "iceberg_namespace_properties"):
                conn.execute(sa.text(f"delete from {table} where catalog_name = :n"), {"n": name})
    finally:
        engine.dispose()


SCENARIOS: list[Callable[..., None]] = [
    scenarios.test_a_writer_that_was_taken_over_commits_nothing_and_names_the_other,
    scenarios.test_the_old_writer_committing_between_the_new_ones_read_and_commit_makes_no_duplicate,
    scenarios.test_unclaimed_sinks_sharing_a_table_keep_working,
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__.removeprefix("test_"))
@pytest.mark.usefixtures("on_postgres")
def test_fencing_on_a_postgresql_catalog(
    scenario: Callable[..., None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if "monkeypatch" in scenario.__code__.co_varnames[: scenario.__code__.co_argcount]:
        scenario(tmp_path, monkeypatch)
    else:
        scenario(tmp_path)
