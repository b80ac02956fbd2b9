"""Column policies: the copies differ from the source by design (hashed, redacted, truncated, excluded
columns), so the reconciler applies the same policies to the source side. A correct pipeline under
policies reports nothing; real drift, in a protected column or not, is still found; and no report
(JSON, HTML, stdout, the history under state_dir) shows a protected value, raw or as the copies hold it.
"""

from __future__ import annotations

import sqlalchemy as sa

from tests.reconciler.recon_pipeline import ReconPipeline
from tests.reconciler.shared_pipeline import Secrets


def test_policies_compare_alike_and_drift_is_found_masked(
    shared_pipeline: ReconPipeline, secrets: Secrets
) -> None:
    """Runs after test_reconcile_drift.py on the same pipeline (its in-sync test covers people too)."""
    from reconciler.report import summary

    pipeline = shared_pipeline
    report = pipeline.reconcile_here(f"{pipeline.db}.people")
    assert report.exit_code == 0, summary(report)  # before: every hashed, redacted, truncated value differed
    assert {r.sink for r in report.results} == {"pg", "maria", "lite", "history"}
    for r in report.results:  # ssn: excluded, not compared (nor listed as missing from the copy)
        assert set(r.columns_compared) == {"id", "email", "full_name", "note", "photo", "plan"}, r
        assert r.columns_not_in_copy == ()

    pg = pipeline.pg()
    with pg.begin() as conn:
        conn.execute(sa.text("UPDATE people SET email = :h WHERE id = 2"), {"h": secrets.hmac(secrets.moved)})
        conn.execute(sa.text("UPDATE people SET note = :n WHERE id = 3"), {"n": secrets.leaked})
        conn.execute(sa.text("UPDATE people SET full_name = :n WHERE id = 4"), {"n": secrets.leaked})
        conn.execute(sa.text("UPDATE people SET plan = 'visible-drift' WHERE id = 5"))
        conn.execute(sa.text("UPDATE people SET photo = :p WHERE id = 6"), {"p": b"\xfe\xed\xff\xff"})
        conn.execute(sa.text("DELETE FROM people WHERE id = 8"))
    pg.dispose()
    pipeline.start_daemon()  # the re-checks wait for the copy to pass the source's position
    report_path = pipeline.tmp / "owners"
    done = pipeline.cdc(
        "reconcile", f"{pipeline.db}.people", "--sink", "pg", "--report", str(report_path), "--wait", "20"
    )
    assert done.returncode == 1, done.stdout + done.stderr
    outputs = [done.stdout, done.stderr, report_path.with_suffix(".json").read_text(),
               report_path.with_suffix(".html").read_text()]  # fmt: skip
    outputs += [p.read_text() for p in (pipeline.tmp / "state" / "reconcile").glob("*.json")]
    import json

    data = json.loads(outputs[2])
    (result,) = data["results"]
    assert result["verdict"] == "drift", outputs[0]
    found = {(s["kind"], s["key"][0], tuple(s["columns"])) for s in result["samples"]}
    assert found == {
        ("different", "2", ("email",)),
        ("different", "3", ("note",)),
        ("different", "4", ("full_name",)),
        ("different", "5", ("plan",)),
        ("different", "6", ("photo",)),
        ("missing", "8", ()),
    }, found
    values = {s["key"][0]: s["values"][0] for s in result["samples"] if s["values"]}
    assert values["2"] == {"column": "email", "source": "[masked]", "copy": "[masked]"}
    assert values["5"] == {"column": "plan", "source": "plan-5", "copy": "visible-drift"}  # not protected
    everything = "\n".join(outputs)
    assert "visible-drift" in everything  # the search below would find a protected value the same way
    for secret in secrets.protected():
        assert secret not in everything, secret


def test_repair_under_policies_sends_what_the_policies_make_and_leaks_nothing(
    shared_pipeline: ReconPipeline, secrets: Secrets
) -> None:
    """`--repair` of drift in protected columns: the corrections go through the daemon's policy path,
    so the copies hold the HMAC, the marker and the prefix again (never the raw value), the second
    comparison matches, and neither the output, the reports, the history nor the daemon's log shows a
    protected value. Runs after the test above (whose drift in pg it repairs too)."""
    import json

    pipeline = shared_pipeline
    pipeline.start_daemon()
    pg, maria = pipeline.pg(), pipeline.maria()
    with pg.begin() as conn:  # raw values in protected columns, as a bug behind the pipeline would
        conn.execute(sa.text("UPDATE people SET email = :e WHERE id = 10"), {"e": secrets.emails[10]})
        conn.execute(sa.text("UPDATE people SET full_name = :n WHERE id = 11"), {"n": secrets.leaked})
        conn.execute(sa.text("DELETE FROM people WHERE id = 12"))
    with maria.begin() as conn:
        conn.execute(sa.text("UPDATE people SET note = :n WHERE id = 13"), {"n": secrets.leaked})
        conn.execute(sa.text("UPDATE people SET email = NULL WHERE id = 14"))
    report_path = pipeline.tmp / "repaired"
    done = pipeline.cdc(
        "reconcile", f"{pipeline.db}.people", "--repair", "--report", str(report_path), "--wait", "20"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "repaired" in done.stdout, done.stdout

    for engine in (pg, maria):
        with engine.connect() as conn:
            rows = {
                r.id: r
                for r in conn.execute(sa.text("SELECT id, email, full_name, note FROM people WHERE id >= 10"))
            }
        engine.dispose()
        for i in (10, 11, 12, 13, 14):
            assert rows[i].email == secrets.hmac(secrets.emails[i]), (engine.url.drivername, i)
            assert rows[i].full_name == "[redacted]"
            assert rows[i].note == secrets.notes[i][:6]
    again = pipeline.reconcile_here(f"{pipeline.db}.people")
    assert again.exit_code == 0, [(r.sink, r.verdict, r.drift) for r in again.results]

    outputs = [done.stdout, done.stderr, report_path.with_suffix(".json").read_text(),
               report_path.with_suffix(".html").read_text(),
               (pipeline.tmp / "daemon.log").read_text()]  # fmt: skip
    outputs += [p.read_text() for p in (pipeline.tmp / "state" / "reconcile").glob("*.json")]
    # --report holds the run that found the drift, with its repair plan; the history's last result
    # per table is the comparison after the repair
    assert "drift" in {r["verdict"] for r in json.loads(outputs[2])["results"]}
    last = json.loads((pipeline.tmp / "state" / "reconcile" / "last.json").read_text())
    people = {v["sink"]: v["verdict"] for v in last.values() if v["table"] == f"{pipeline.db}.people"}
    assert people == dict.fromkeys(("pg", "maria", "lite", "history"), "match"), people
    everything = "\n".join(outputs)
    for secret in secrets.protected():
        assert secret not in everything, secret
