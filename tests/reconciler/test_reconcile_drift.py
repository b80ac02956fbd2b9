"""`cdc reconcile` finds drift of every kind injected straight into copies made by the real pipeline
(PostgreSQL and SQLite serving tables, the Iceberg history), exactly, while the daemon runs."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from tests.reconciler.recon_pipeline import ReconPipeline


@pytest.fixture
def pipeline(shared_pipeline: ReconPipeline) -> ReconPipeline:
    return shared_pipeline


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
    assert rows == {("kinds", 40, 40), ("names", 90, 90), ("people", 24, 24)}, report  # people: policies


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


def test_a_keyless_table_found_by_the_scan_is_not_compared_and_fails_nothing(pipeline: ReconPipeline) -> None:
    """MediaWiki has four keyless tables: a plain `cdc reconcile` over it always exited 2 (mwboot)."""
    pipeline.execute("CREATE TABLE keyless_log (note varchar(20))", "INSERT INTO keyless_log VALUES ('a')")
    try:
        scan = pipeline.reconcile_here(wait=5.0)
        assert not [e for e in scan.errors if "keyless_log" in e], scan.errors
        assert [n for n in scan.not_compared if "keyless_log" in n and "primary key" in n], scan.not_compared
        named = pipeline.reconcile_here(f"{pipeline.db}.keyless_log", wait=5.0)
        assert named.exit_code == 2 and "no primary key" in " ".join(named.errors), named.errors
    finally:
        pipeline.execute("DROP TABLE keyless_log")
