"""`cdc reconcile` finds drift of every kind injected straight into copies made by the real pipeline
(PostgreSQL and SQLite serving tables, the Iceberg history), exactly, while the daemon runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cdc.devstack.connections import StackConnections
from tests.reconciler.recon_pipeline import ReconPipeline

TABLE = (
    "CREATE TABLE kinds (id INT PRIMARY KEY, amount DECIMAL(12,2), ts DATETIME(6), note VARCHAR(50), "
    "data VARBINARY(16), f DOUBLE, d DATE, tz TIMESTAMP(6) NULL DEFAULT NULL, j JSON, tm TIME(6), "
    "big BIGINT UNSIGNED)"
)


def _rows() -> list[str]:
    out = []
    for i in range(1, 41):
        note = "NULL" if i == 5 else f"'note {i}'"
        amount = "12.10" if i == 3 else f"{i}.5"
        out.append(
            f"({i}, {amount}, '2024-01-02 03:04:05.{i:06d}', {note}, X'00{i:02x}ff', {i}.25, "
            f"'2024-02-{(i % 28) + 1:02d}', "
            f"'2024-03-04 05:06:07.{i:06d}', '{{\"k\": {i}}}', '-{i}:30:00.5', {18446744073709551615 - i})"
        )
    return out


@pytest.fixture
def pipeline(stack: StackConnections, tmp_path: Path) -> Iterator[ReconPipeline]:
    p = ReconPipeline.create(stack, tmp_path)
    try:
        p.run_until_caught_up()  # the pipeline's start: changes after it reach the copies
        p.execute(TABLE, "INSERT INTO kinds VALUES " + ", ".join(_rows()))
        # a text key: chunks bounded by source keys in byte order ('B' < 'a' < 'é'), whatever the collation
        p.execute(
            "CREATE TABLE names (name VARCHAR(20) CHARACTER SET utf8mb4 PRIMARY KEY, v INT)",
            "INSERT INTO names VALUES "
            + ", ".join(f"('{w}{i}', {i})" for i in range(30) for w in ("a", "B", "é")),
        )
        p.run_until_caught_up()
        yield p
    finally:
        p.close()


def _found(report: dict[str, Any], sink: str, table: str) -> set[tuple[str, str, tuple[str, ...]]]:
    results = [r for r in report["results"] if r["sink"] == sink and r["table"].endswith(f".{table}")]
    assert len(results) == 1, report
    return {(s["kind"], s["key"][0], tuple(s["columns"])) for s in results[0]["samples"]}


EXPECTED = {
    ("missing", "1", ()),
    ("extra", "1000", ()),
    ("different", "2", ("note",)),
    ("different", "3", ("amount",)),
    ("different", "4", ("ts",)),
    ("different", "5", ("note",)),
    ("different", "6", ("data",)),
}


def _inject_sql(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM kinds WHERE id = 1"))
        conn.execute(sa.text("INSERT INTO kinds (id, note) VALUES (1000, 'not in the source')"))
        conn.execute(sa.text("UPDATE kinds SET note = 'changed' WHERE id = 2"))
        conn.execute(sa.text("UPDATE kinds SET amount = :a WHERE id = 3"), {"a": "12.11"})
        conn.execute(sa.text("UPDATE kinds SET note = '' WHERE id = 5"))
        conn.execute(sa.text("UPDATE kinds SET data = :d WHERE id = 6"), {"d": bytes.fromhex("0006fe")})
    engine.dispose()


def test_in_sync_copies_match(pipeline: ReconPipeline) -> None:
    pipeline.start_daemon()
    code, report, output = pipeline.reconcile("--chunk-rows", "7")
    assert code == 0, output
    assert {r["sink"] for r in report["results"]} == {"pg", "maria", "lite", "history"}
    rows = {(r["table"].split(".")[1], r["rows_source"], r["rows_copy"]) for r in report["results"]}
    assert rows == {("kinds", 40, 40), ("names", 90, 90)}, report


def test_every_kind_of_drift_found_exactly(pipeline: ReconPipeline) -> None:
    pg, lite, maria = pipeline.pg(), pipeline.lite(), pipeline.maria()
    _inject_sql(pg)
    _inject_sql(lite)
    _inject_sql(maria)
    for engine in (pg, lite, maria):
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE names SET v = 99 WHERE name = 'é7'"))
            conn.execute(sa.text("DELETE FROM names WHERE name = 'B3'"))
    with maria.begin() as conn:
        conn.execute(sa.text("UPDATE kinds SET ts = ts + INTERVAL 1 MICROSECOND WHERE id = 4"))
    maria.dispose()
    with pg.begin() as conn:
        conn.execute(sa.text("UPDATE kinds SET ts = ts + interval '1 microsecond' WHERE id = 4"))
    with lite.begin() as conn:  # SQLite keeps DATETIME as ISO text with microseconds
        conn.execute(sa.text("UPDATE kinds SET ts = '2024-01-02 03:04:05.000005' WHERE id = 4"))
    pg.dispose()
    lite.dispose()
    import datetime as dt
    import decimal

    pipeline.iceberg_inject(
        "kinds",
        [
            ("d", {"id": 1}),
            ("c", {"id": 1000, "note": "not in the source"}),
            ("u", {"id": 2, "note": "changed"}),
            ("u", {"id": 3, "amount": decimal.Decimal("12.11")}),
            ("u", {"id": 4, "ts": dt.datetime(2024, 1, 2, 3, 4, 5, 5)}),
            ("u", {"id": 5, "note": ""}),
            ("u", {"id": 6, "data": bytes.fromhex("0006fe")}),
        ],
    )
    pipeline.start_daemon()
    code, report, output = pipeline.reconcile("--chunk-rows", "7")
    assert code == 1, output
    for sink in ("pg", "maria", "lite", "history"):
        assert _found(report, sink, "kinds") == EXPECTED, (sink, output)
    for sink in ("pg", "maria", "lite"):
        assert _found(report, sink, "names") == {("different", "é7", ("v",)), ("missing", "B3", ())}, output
    values = {s["key"][0]: s["values"] for r in report["results"] if r["sink"] == "pg" for s in r["samples"]}
    assert values["3"] == [{"column": "amount", "source": "12.10", "copy": "12.11"}]
    assert values["5"] == [{"column": "note", "source": None, "copy": ""}]
    # --dry-run prints the plan a repair would send
    done = pipeline.cdc("reconcile", "--dry-run", "--sink", "pg", "--wait", "20")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "re-send 6 source row(s), delete 1 key(s)" in done.stdout  # kinds
    assert "re-send 2 source row(s), delete 0 key(s)" in done.stdout  # names
    # --repair sends the source's rows (deletes for the extra keys) through the running daemon to
    # every copy, then compares again: every kind of drift in every copy is gone
    done = pipeline.cdc("reconcile", "--repair")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "through the running `cdc run`" in done.stderr and "every copy matches its source" in done.stdout
    code, report, output = pipeline.reconcile()
    assert code == 0, output
