"""Range digests (one MD5 of a key range's rows joined in key order) equal across MariaDB and
PostgreSQL for every kind of value: the in-sync compare's fast path, which only counts when the
canonical texts match byte for byte (otherwise every range falls back to bucket sums: slow, and
the benchmark's figure would be wrong)."""

from __future__ import annotations

import pytest

from cdc.config import load_config
from cdc.config.models import SqlSinkConfig
from cdc.core.schemas import TableRef
from reconciler.model import KeyRange
from reconciler.targets import open_source, source_runner, sql_copy
from tests.reconciler.recon_pipeline import ReconPipeline


@pytest.fixture
def pipeline(shared_pipeline: ReconPipeline) -> ReconPipeline:
    return shared_pipeline


def test_in_sync_digests_are_equal_in_mariadb_and_postgresql(pipeline: ReconPipeline) -> None:
    config = load_config(pipeline.config, pipeline.env())
    source = open_source(source_runner(config.source), TableRef(pipeline.db, "kinds"))
    ranges = [KeyRange(1, 20), KeyRange(20, 41), KeyRange(41, 100)]  # the last one empty
    try:
        expected = source.store.digests(ranges)
        assert all(d is not None for d in expected) and expected[2] == (0, ""), expected
        for sink in config.sinks:
            if not isinstance(sink, SqlSinkConfig) or sink.name not in ("pg", "maria"):
                continue
            copy = sql_copy(sink.name, sink, config.name, source)
            try:
                assert copy.store().digests(ranges) == expected, sink.name
            finally:
                copy.close()
    finally:
        source.runner.close()
