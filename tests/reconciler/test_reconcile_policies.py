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
