"""A BIGINT UNSIGNED key up to 2**64-1 (MediaWiki's actor and revision), copied by the real pipeline:
every copy reports all its rows, in sync it matches, and drift past 2**63 is found, never MATCH.

Keys 1, 2**63-1, 2**63 and 2**64-1: the two halves of the signed 64-bit range meet between the middle
two, so a count, a key range or a bucket computed in signed 64-bit arithmetic loses the upper half.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from cdc.config import load_config
from cdc.config.models import SqlSinkConfig
from cdc.core.schemas import TableRef
from cdc.devstack.connections import StackConnections
from reconciler.model import DriftKind, KeyRange, Verdict
from reconciler.report import Report
from reconciler.run import ReconcileOptions, reconcile_copy
from reconciler.stores import BucketSums, Store
from reconciler.targets import open_source, source_runner, sql_copy
from tests.reconciler.recon_pipeline import ReconPipeline

SERVER_IDS = (5600, 5699)  # this area's range (u64recon)
KEYS = (1, 2**63 - 1, 2**63, 2**64 - 1)


@pytest.fixture(scope="module")
def u64(stack: StackConnections, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReconPipeline]:
    p = ReconPipeline.create(stack, tmp_path_factory.mktemp("u64recon"))
    text = p.config.read_text()
    p.config.write_text(re.sub(r"server_id: \d+", f"server_id: {random.randint(*SERVER_IDS)}", text))
    try:
        p.run_until_caught_up()  # the pipeline's start: changes after it reach the copies
        p.execute(
            "CREATE TABLE u (id BIGINT UNSIGNED PRIMARY KEY, v VARCHAR(32) NOT NULL)",
            "INSERT INTO u VALUES " + ", ".join(f"({k}, 'v{k}')" for k in KEYS),
        )
        p.run_until_caught_up()
        p.start_daemon()  # the re-checks of drift wait for the copies to pass the source's position
        yield p
    finally:
        p.close()


Seen = dict[str, tuple[Verdict, int, int, set[tuple[DriftKind, str]]]]  # per sink


def _by_sink(report: Report) -> Seen:
    return {
        r.sink: (r.verdict, r.rows_source, r.rows_copy, {(d.kind, d.key[0]) for d in r.drift})
        for r in report.results
    }


def test_in_sync_every_copy_counts_every_key_and_matches(u64: ReconPipeline) -> None:
    report = u64.reconcile_here(f"{u64.db}.u", wait=5)
    expected: Seen = {s: (Verdict.MATCH, 4, 4, set()) for s in ("pg", "maria", "lite", "history")}
    assert (_by_sink(report), report.errors) == (expected, ())


@dataclass(frozen=True)
class _Miscounting(Store):
    """A copy whose bucket counts say one row more than its rows hold: what a wrong bucket (or range)
    arithmetic looks like from outside."""

    def bucket_sums(self, ranges: Sequence[KeyRange], origin: int, width: int) -> BucketSums:
        return {b: (n + 1, s) for b, (n, s) in super().bucket_sums(ranges, origin, width).items()}

    def digests(self, ranges: Sequence[KeyRange]) -> list[tuple[int, str] | None]:
        return [None if d is None else (d[0] + 1, d[1]) for d in super().digests(ranges)]


def test_a_count_mismatch_with_no_drift_found_is_an_error_never_match(u64: ReconPipeline) -> None:
    config = load_config(u64.config, u64.env())
    maria = config.sinks[1]
    assert isinstance(maria, SqlSinkConfig)
    source = open_source(source_runner(config.source), TableRef(u64.db, "u"))
    copy = sql_copy("maria", maria, config.name, source)
    try:
        real = copy.store()
        wrong = _Miscounting(real.runner, real.table_sql, real.key, real.columns)
        result = reconcile_copy(source, dataclasses.replace(copy, store=lambda: wrong), lambda: None,
                                ReconcileOptions(wait_seconds=1))  # fmt: skip
    finally:
        copy.close()
        source.runner.close()
    assert (result.verdict, result.rows_source, result.rows_copy, result.drift) == (Verdict.ERROR, 4, 5, ())
    assert f"{u64.db}.u -> sink maria: 4 source rows and 5 copy rows" in result.message


def test_drift_past_2_63_is_found_in_postgres_and_the_history(u64: ReconPipeline) -> None:
    pg = u64.pg()
    with pg.begin() as conn:
        conn.execute(sa.text(f"DELETE FROM u WHERE id = {2**64 - 1}"))
    pg.dispose()
    u64.iceberg_inject("u", [("u", {"id": 2**63, "v": "changed"})])
    report = u64.reconcile_here(f"{u64.db}.u", wait=15)
    found = _by_sink(report)
    assert found["pg"] == (Verdict.DRIFT, 4, 3, {(DriftKind.MISSING, str(2**64 - 1))})
    assert found["history"] == (Verdict.DRIFT, 4, 4, {(DriftKind.DIFFERENT, str(2**63))})
    assert found["maria"][0] is Verdict.MATCH and found["lite"][0] is Verdict.MATCH
    assert not report.errors
