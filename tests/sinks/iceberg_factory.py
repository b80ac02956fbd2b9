"""The Iceberg history sink for the behaviour suite: a SQLite catalog and a warehouse in tmp_dir.

``current_rows`` is the state as of the latest committed position, rebuilt from the history
(sinks.iceberg.as_of) and mapped back to the source's Python values; ``history`` is every history row
in position order. ``commit_rows`` is 1 so that each apply commits (the suite checks ``applied()``
right after ``apply``); buffering has its own tests (tests/unit/test_iceberg_sink.py).
"""

from __future__ import annotations

from pathlib import Path

from cdc.config.models import IcebergSinkConfig
from cdc.core.errors import ConfigError
from cdc.core.schemas import TableRef
from sinks.contract import Sink
from sinks.iceberg import create_iceberg_sink, read_history
from sinks.iceberg.as_of import rebuild_state
from sinks.iceberg.history_schema import to_source_values
from tests.sinks.harness import SinkUnderTest

__all__ = ["make_iceberg_sink_under_test"]

PIPELINE = "behaviour"


def make_iceberg_sink_under_test(tmp_dir: Path, commit_rows: int = 1) -> SinkUnderTest:
    config = IcebergSinkConfig(
        catalog={
            "type": "sql",
            "uri": f"sqlite:///{tmp_dir / 'iceberg-catalog.db'}",
            "warehouse": (tmp_dir / "warehouse").as_uri(),
        },
        namespace="behaviour",
        commit_rows=commit_rows,
        commit_seconds=3600,
    )
    sink = create_iceberg_sink(config, PIPELINE)

    def history(ref: TableRef) -> list[dict[str, object]]:
        try:
            found = read_history(config.catalog, config.namespace, ref)
        except ConfigError:  # no history table yet: nothing was applied to it
            return []
        return to_source_values(found.rows, found.column_kinds)

    def current_rows(ref: TableRef) -> dict[tuple[object, ...], dict[str, object]]:
        try:
            found = read_history(config.catalog, config.namespace, ref)
        except ConfigError:
            return {}
        state = rebuild_state(found.rows, found.primary_key)
        key = found.primary_key or tuple(state.column_names)
        return {tuple(row[k] for k in key): row for row in to_source_values(state, found.column_kinds)}

    def reopen() -> Sink:
        return create_iceberg_sink(config, PIPELINE)

    return SinkUnderTest(sink, current_rows, history, sink.close, reopen=reopen)
