"""Bootstrap and reconcile MediaWiki's real schema end to end (issues 9 and 10), with the real `cdc` CLI.

62 tables (VARBINARY everywhere, `DEFAULT CHARSET=binary`, composite keys, binary(14) timestamps,
enums, blobs, a MyISAM table, four keyless tables) filled with awkward values (tests/support/
mwboot_wiki.py), one of them (l10n_cache, a composite binary key) with a few thousand rows so that it
is read in many chunks. An embedded pipeline copies them into PostgreSQL, SQLite and the Iceberg
history, and `cdc reconcile` proves every copy equal to the source.
"""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdc.devstack.connections import StackConnections
from tests.support.mwboot_wiki import (
    CHUNKED_ROWS,
    CHUNKED_TABLE,
    ROWS,
    CdcResult,
    MwPipeline,
    WikiWorkload,
    chunked_row,
    value,
)

pytestmark = pytest.mark.slow  # a bootstrap of 62 tables into three sinks: see the module's timings

SINKS = ("pg", "lite", "hist")


@dataclass(frozen=True)
class Booted:
    wiki: MwPipeline
    config: Path
    bootstrap: CdcResult


@pytest.fixture(scope="module")
def booted(stack: StackConnections, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Booted]:
    """The wiki filled before the pipeline exists, then `cdc bootstrap` with no daemon running."""
    wiki = MwPipeline.create(stack, tmp_path_factory.mktemp("mwboot"))
    try:
        wiki.fill()
        config = wiki.write_config()
        yield Booted(wiki, config, wiki.cdc(config, "bootstrap", f"{wiki.db}.*"))
    finally:
        wiki.drop()


@dataclass(frozen=True)
class Reconciled:
    result: CdcResult
    report: dict[str, object]

    def copies(self) -> dict[tuple[str, str], dict[str, object]]:
        """(table, sink) -> that copy's result in the JSON report."""
        results = self.report.get("results", [])
        assert isinstance(results, list)
        return {(str(r["table"]).split(".", 1)[1], str(r["sink"])): r for r in results}

    def drifted(self) -> dict[tuple[str, str], dict[str, int]]:
        """(table, sink) -> drift counts by kind, for the copies that do not match."""
        return {
            key: {k: v for k, v in r["drift"].items() if v}  # type: ignore[attr-defined]
            for key, r in self.copies().items()
            if r["verdict"] != "match"
        }


def reconcile(wiki: MwPipeline, config: Path, tables: list[str], *args: str) -> Reconciled:
    report = wiki.tmp / f"report-{time.monotonic_ns()}"
    done = wiki.cdc(config, "reconcile", *(f"{wiki.db}.{t}" for t in tables), "--report", str(report), *args)
    path = report.with_suffix(".json")
    return Reconciled(done, json.loads(path.read_text()) if path.exists() else {})


def test_bootstrap_then_reconcile_every_table(booted: Booted) -> None:
    wiki, done = booted.wiki, booted.bootstrap
    # the keyless tables are refused by name (exit 2, docs/bootstrap.md); every other one is copied
    assert done.code == 2, done.output[-4000:]
    refused = {t for t in wiki.keyless if f"{wiki.db}.{t}: NOT bootstrapped" in done.output}
    assert refused == set(wiki.keyless) == {"oldimage", "querycache", "querycachetwo", "user_newtalk"}
    assert "no primary key" in done.output

    # SQLite cannot yet be compared on keys past 2**63-1 (test_sqlite_copy_of_keys_past_int64 below)
    config = wiki.write_config(lite_exclude=tuple(wiki.wide_keyed), file="reconcile.yaml")
    checked = reconcile(wiki, config, wiki.keyed)
    assert checked.result.code == 0, checked.result.output[-6000:]
    assert not checked.drifted()
    copies = checked.copies()
    assert copies.keys() == {(t, s) for t in wiki.keyed for s in SINKS} - {
        (t, "lite") for t in wiki.wide_keyed
    }
    assert copies[(CHUNKED_TABLE, "pg")]["rows_copy"] == ROWS + CHUNKED_ROWS
    assert {copies[("page", s)]["rows_copy"] for s in SINKS} == {ROWS}

    # a keyless table named to the reconciler: an error that names it (docs/reconcile.md, Limits)
    keyless = wiki.cdc(config, "reconcile", f"{wiki.db}.user_newtalk")
    assert keyless.code == 2, keyless.output[-3000:]
    assert f"{wiki.db}.user_newtalk" in keyless.output and "no primary key" in keyless.output

    # a copy its store cannot checksum (a user changed a column's type in PostgreSQL): an error
    # naming the table and the sink, exit 2 (not 1, "drift"), and the other tables still compared
    pg = sa.create_engine(wiki.pg_url(wiki.db))
    with pg.begin() as conn:
        conn.execute(
            sa.text("ALTER TABLE sites ALTER COLUMN site_data TYPE text USING encode(site_data, 'hex')")
        )
    pg.dispose()
    broken = reconcile(wiki, config, ["sites", "user"], "--sink", "pg")
    assert broken.result.code == 2, broken.result.output[-3000:]
    assert f"ERROR    {wiki.db}.sites -> sink pg: " in broken.result.stdout, broken.result.output[-3000:]
    assert broken.copies()[("user", "pg")]["verdict"] == "match"


@pytest.mark.xfail(
    strict=True,
    reason="reconciler: a SQLite copy of a BIGINT UNSIGNED key past 2**63-1 (stored as TEXT by the sink) "
    "crashes the comparison: OverflowError: Python int too large to convert to SQLite INTEGER "
    "(the key range is bound as a parameter): the copy is reported as an error, exit 2 instead of 0",
)
def test_sqlite_copy_of_keys_past_int64(booted: Booted) -> None:
    wiki = booted.wiki
    assert booted.bootstrap.code == 2  # the keyless tables only (test above)
    checked = reconcile(wiki, booted.config, ["actor", "revision"], "--sink", "lite")
    assert checked.result.code == 0, checked.result.output[-3000:]
    assert not checked.drifted() and len(checked.copies()) == 2


def _start_daemon(wiki: MwPipeline, config: Path) -> subprocess.Popen[bytes]:
    """`cdc run` (embedded), once it streams: the copies follow the source while reconcile re-checks."""
    proc = wiki.start(config)
    log = wiki.tmp / "run-daemon.log"
    deadline = time.monotonic() + 60
    while "binlog dump started" not in (log.read_text() if log.exists() else ""):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(60)


def test_drift_in_postgres_found_exactly_and_repaired(booted: Booted) -> None:
    wiki = booted.wiki
    config = wiki.write_config(lite_exclude=tuple(wiki.wide_keyed), file="reconcile.yaml")
    page_id = 4294967295  # row 1: the largest INT UNSIGNED; its title b"Main_Page\x00\xff"
    source_title = value(next(c for c in wiki.columns["page"] if c.name == "page_title"), 1)
    # the case-differing keys b"msg-0", b"MSG-0", b"Msg-0" under b"en": only the second one goes
    lost = chunked_row(5)
    assert lost[:2] == (b"en", b"MSG-0")
    proc = _start_daemon(wiki, booted.config)  # the source moves on (other tests): copies must follow
    try:
        pg = sa.create_engine(wiki.pg_url(wiki.db))
        with pg.begin() as conn:
            changed = conn.execute(
                sa.text("UPDATE page SET page_title = :t WHERE page_id = :id"),
                {"t": b"Main_Page\x00\xfe", "id": page_id},  # the last byte off by one
            )
            deleted = conn.execute(
                sa.text("DELETE FROM l10n_cache WHERE lc_lang = :l AND lc_key = :k"),
                {"l": lost[0], "k": lost[1]},
            )
            assert changed.rowcount == deleted.rowcount == 1
        tables = ["page", CHUNKED_TABLE, "user"]
        repaired = reconcile(wiki, config, tables, "--repair")
        assert repaired.result.code == 0, repaired.result.output[-4000:]  # the compare after the repair
        assert repaired.drifted() == {("page", "pg"): {"different": 1}, (CHUNKED_TABLE, "pg"): {"missing": 1}}
        samples = repaired.copies()[("page", "pg")]["samples"]
        assert isinstance(samples, list) and [s["columns"] for s in samples] == [["page_title"]]
        again = reconcile(wiki, config, tables)
        assert again.result.code == 0 and not again.drifted(), again.result.output[-4000:]
        with pg.connect() as conn:
            title = conn.execute(sa.text("SELECT page_title FROM page WHERE page_id = :id"), {"id": page_id})
            assert bytes(title.scalar_one()) == source_title
            variants = conn.execute(
                sa.text(
                    "SELECT lc_key, lc_value FROM l10n_cache WHERE lc_lang = :l AND lc_key IN (:a, :b, :c)"
                ),
                {"l": b"en", "a": b"msg-0", "b": b"MSG-0", "c": b"Msg-0"},
            )
            assert sorted((bytes(k), bytes(v)) for k, v in variants) == sorted(
                chunked_row(j)[1:] for j in (0, 5, 10)
            )
        pg.dispose()
    finally:
        _stop(proc)


WORKLOAD_TABLES = (
    "page",
    "revision",
    "user",
    "actor",
    "image",
    "categorylinks",
    "searchindex",
    CHUNKED_TABLE,
)


def test_incremental_bootstrap_under_writes_then_reconcile(stack: StackConnections, tmp_path: Path) -> None:
    wiki = MwPipeline.create(stack, tmp_path)
    try:
        wiki.fill()  # before the pipeline exists: only a bootstrap brings these rows
        config = wiki.write_config(lite_exclude=tuple(wiki.wide_keyed))
        proc = _start_daemon(wiki, config)
        workload = WikiWorkload(wiki, WORKLOAD_TABLES, random.randrange(1 << 30))
        writer = threading.Thread(target=workload.run)
        writer.start()
        try:
            done = wiki.cdc(config, "bootstrap", *(f"{wiki.db}.{t}" for t in WORKLOAD_TABLES))
        finally:
            workload.stop.set()
            writer.join()
        assert workload.error is None, workload.error
        assert done.code == 0, done.output[-4000:]
        assert "handed to the running `cdc run`" in done.output, done.output[-2000:]
        try:
            checked = reconcile(wiki, config, list(WORKLOAD_TABLES))
        finally:
            _stop(proc)
        assert workload.transactions > 20
        assert checked.result.code == 0, checked.result.output[-6000:]
        assert not checked.drifted()
    finally:
        wiki.drop()
