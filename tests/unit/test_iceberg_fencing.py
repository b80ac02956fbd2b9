"""Writer fencing of the history sink (embedded mode): two `cdc run` on one config never both land rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdc.config.models import IcebergSinkConfig
from cdc.core.errors import SinkUnavailable, WriterFenced
from cdc.core.schemas import TableRef
from sinks.contract import AppliedState, SinkBatch, WriterIdentity
from sinks.iceberg import create_iceberg_sink, read_history
from sinks.iceberg import fencing as fencing_module
from sinks.iceberg import history_sink as history_sink_module
from sinks.iceberg.catalogs import open_catalog
from sinks.iceberg.fencing import Claim
from sinks.iceberg.history_schema import arrow_schema_of
from sinks.iceberg.history_sink import IcebergHistorySink
from tests.sinks.builders import REF, Writer

FIRST = WriterIdentity("host-a", 101, "2026-11-30T04:00:00+00:00")
SECOND = WriterIdentity("host-b", 202, "2026-11-30T05:00:00+00:00")


def _config(tmp_path: Path) -> IcebergSinkConfig:
    return IcebergSinkConfig(
        catalog={
            "type": "sql",
            "uri": f"sqlite:///{tmp_path / 'catalog.db'}",
            "warehouse": (tmp_path / "wh").as_uri(),
        },
        namespace="fence",
        commit_rows=1000,
        commit_seconds=3600,
    )


def _open(config: IcebergSinkConfig, claim: WriterIdentity | None = None) -> IcebergHistorySink:
    sink = create_iceberg_sink(config, "pipe")
    sink.open()
    if claim is not None:
        sink.claim_writer(claim)
    return sink


def _ids(config: IcebergSinkConfig, ref: TableRef = REF) -> list[int]:
    return [int(str(i)) for i in read_history(config.catalog, "fence", ref).rows.column("id").to_pylist()]


def test_a_writer_that_was_taken_over_commits_nothing_and_names_the_other(tmp_path: Path) -> None:
    config = _config(tmp_path)
    old = _open(config, FIRST)
    w = Writer()
    first = w.insert(1, "a", 1).batch()
    old.apply(first)
    old.flush()
    second = w.insert(2, "b", 2).batch()
    old.apply(second)  # buffered
    new = _open(config, SECOND)
    assert new.applied() == first.state
    with pytest.raises(WriterFenced) as info:
        old.flush()
    assert "pid 202 on host-b" in str(info.value) and "epoch 2" in str(info.value)
    assert _ids(config) == [1]  # the fenced writer landed nothing more
    assert _open(config).applied() == first.state
    third = w.insert(3, "c", 3).batch()
    with pytest.raises(WriterFenced):  # and stays fenced
        old.apply(third)
        old.flush()
    new.apply(second)
    new.apply(third)
    new.flush()
    assert _ids(config) == [1, 2, 3]


def test_the_old_writer_committing_between_the_new_ones_read_and_commit_makes_no_duplicate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path)
    old = _open(config, FIRST)
    w = Writer()
    first = w.insert(1, "a", 1).batch()
    old.apply(first)
    old.flush()
    second = w.insert(2, "b", 2).insert(3, "c", 3).batch()
    old.apply(second)  # buffered by the old writer
    new = _open(config, SECOND)
    new.apply(second)  # the new writer re-delivers from what it read: row 2 and 3 buffered, table read
    # the old writer passed its epoch check just before the new one claimed, then its table commit lands
    real_check = fencing_module.check_not_fenced
    passed: list[Claim] = []

    def check_made_before_the_claim(sink: str, progress, mine: Claim):  # type: ignore[no-untyped-def]
        if mine.epoch == 1 and not passed:
            passed.append(mine)
            return None
        return real_check(sink, progress, mine)

    monkeypatch.setattr(history_sink_module, "check_not_fenced", check_made_before_the_claim)
    with pytest.raises(WriterFenced):
        old.flush()  # its rows landed in the table; its progress commit is refused
    assert _ids(config) == [1, 2, 3]
    with pytest.raises(SinkUnavailable):
        new.flush()  # built on a snapshot that is no longer the table's: nothing lands
    assert _ids(config) == [1, 2, 3]
    # the daemon restarts from the sinks' positions: the table skips what the old writer landed
    restarted = _open(config, SECOND)
    assert restarted.applied() == first.state
    restarted.apply(second)
    restarted.apply(w.insert(4, "d", 4).batch())
    restarted.flush()
    assert _ids(config) == [1, 2, 3, 4]
    assert restarted.applied() == AppliedState(w.clock.current)


def test_a_claimed_writer_still_builds_on_maintenance_commits(tmp_path: Path) -> None:
    config = _config(tmp_path)
    sink = _open(config, FIRST)
    w = Writer()
    sink.apply(w.insert(1, "a", 1).batch())
    sink.flush()
    other = open_catalog(config.catalog).load_table("fence.items__history")  # e.g. `cdc maintain`
    other.append(arrow_schema_of(other.schema()).empty_table(), snapshot_properties={"by": "maintenance"})
    sink.apply(w.insert(2, "b", 2).batch())
    sink.flush()
    assert _ids(config) == [1, 2]


def test_unclaimed_sinks_sharing_a_table_keep_working(tmp_path: Path) -> None:
    """Kafka mode: several `cdc sink` processes of one group write the same tables, unclaimed."""
    config = _config(tmp_path)
    one, two = _open(config), _open(config)
    a, b = Writer(), Writer()
    b.clock.txn()
    one.apply(a.insert(1, "a", 1).batch(offsets={"t:0": 1}))
    two.apply(b.insert(2, "b", 2).batch(offsets={"t:1": 1}))
    one.flush()
    two.flush()  # its view of the table is stale: the sink retries on top of the other's rows
    one.apply(a.insert(3, "c", 3).batch(offsets={"t:0": 2}))
    one.flush()
    assert sorted(_ids(config)) == [1, 2, 3]
    applied = _open(config).applied()
    assert applied is not None and dict(applied.offsets) == {"t:0": 2, "t:1": 1}


def test_the_epoch_survives_progress_snapshot_expiry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history_sink_module, "_PROGRESS_EXPIRE_EVERY", 2)
    monkeypatch.setattr(history_sink_module, "_PROGRESS_KEEP", 1)
    config = _config(tmp_path)
    sink = _open(config, FIRST)
    w = Writer()
    for key in range(1, 6):
        sink.apply(w.insert(key, "x", key).batch())
        sink.flush()
    assert sink._progress is not None
    held = fencing_module.stored_claim(sink._progress)
    assert held == Claim(1, FIRST.describe())
    assert _open(config, SECOND)._claim == Claim(2, SECOND.describe())


def test_a_flush_with_nothing_to_commit_tells_a_fenced_writer(tmp_path: Path) -> None:
    """The daemon probes its sinks after a source failure with an empty batch at applied()."""
    config = _config(tmp_path)
    old = _open(config, FIRST)
    w = Writer()
    old.apply(w.insert(1, "a", 1).batch())
    old.flush()
    applied = old.applied()
    assert applied is not None
    old.apply(SinkBatch((), applied))
    old.flush()  # not fenced yet: fine
    _open(config, SECOND)
    old.apply(SinkBatch((), applied))
    with pytest.raises(WriterFenced, match="host-b"):
        old.flush()


def test_claiming_again_drops_the_buffer_so_re_delivery_makes_no_duplicate(tmp_path: Path) -> None:
    """The daemon claims at every attempt; after a failure it re-delivers from applied()."""
    config = _config(tmp_path)
    sink = _open(config, FIRST)
    w = Writer()
    first = w.insert(1, "a", 1).batch()
    sink.apply(first)  # buffered, then the attempt fails elsewhere (the source, say)
    sink.claim_writer(FIRST)
    assert sink.applied() is None
    sink.apply(first)  # re-delivered
    sink.flush()
    assert _ids(config) == [1]
