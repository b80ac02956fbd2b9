"""Column policies: the copies differ from the source by design (hashed, redacted, truncated, excluded
columns), so the reconciler applies the same policies to the source side. A correct pipeline under
policies reports nothing; real drift, in a protected column or not, is still found; and no report
(JSON, HTML, stdout, the history under state_dir) shows a protected value, raw or as the copies hold it.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from cdc.devstack.connections import StackConnections
from tests.reconciler.recon_pipeline import ReconPipeline

KEY_ENV = "RECON2_HASH_KEY"
POLICIES = f"""policies:
  hash_key_env: {KEY_ENV}
  tables:
    "{{db}}.people":
      email: hash
      ssn: exclude
      full_name: redact
      note: {{truncate: 6}}
      photo: {{truncate: 4}}
"""
ROWS = 24


class Secrets:
    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:10]
        self.key = f"hmac-key-{uuid.uuid4().hex}"
        self.emails = [f"p{i}-{tag}@secret.example" for i in range(ROWS)]
        self.ssns = [f"SSN-{tag}-{i:04d}" for i in range(ROWS)]
        self.names = [f"Name{tag}P{i}" for i in range(ROWS)]
        # the first 6 characters (what the copies hold) are distinct per run too
        self.notes = [f"Q{tag[:3]}{i:02d}-rest-of-note-{tag}" for i in range(ROWS)]
        self.photos = [bytes.fromhex(f"feed{i:02x}{tag[:8]}") for i in range(ROWS)]
        # written raw into a copy's protected column, by a "bug" (6 characters: fits the copies)
        self.leaked = f"Lk{tag[4:8]}"
        self.moved = f"moved-{tag}@secret.example"

    def protected(self) -> list[str]:
        return [
            self.key, self.leaked, self.moved, self.hmac(self.moved),
            *self.emails, *map(self.hmac, self.emails), *self.ssns, *self.names,
            *(n[:6] for n in self.notes), *(p.hex() for p in self.photos),
            *(p[:4].hex() for p in self.photos),
        ]  # fmt: skip

    def hmac(self, value: str) -> str:
        return hmac.new(self.key.encode(), value.encode(), hashlib.sha256).hexdigest()


@pytest.fixture
def secrets() -> Secrets:
    return Secrets()


@pytest.fixture
def pipeline(stack: StackConnections, tmp_path: Path, secrets: Secrets) -> Iterator[ReconPipeline]:
    p = ReconPipeline.create(stack, tmp_path, POLICIES)
    p.extra_env[KEY_ENV] = secrets.key
    try:
        p.run_until_caught_up()
        p.execute(
            "CREATE TABLE people (id INT PRIMARY KEY, email VARCHAR(100), ssn VARCHAR(30), "
            "full_name VARCHAR(60), note TEXT, photo VARBINARY(20), plan VARCHAR(20))"
        )
        with p.source() as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO people VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [
                    (i, None if i == 7 else secrets.emails[i], secrets.ssns[i], secrets.names[i],
                     secrets.notes[i], secrets.photos[i], f"plan-{i}")
                    for i in range(ROWS)
                ],
            )  # fmt: skip
        p.run_until_caught_up()
        yield p
    finally:
        p.close()


def test_policies_compare_alike_and_drift_is_found_masked(pipeline: ReconPipeline, secrets: Secrets) -> None:
    code, report, output = pipeline.reconcile()
    assert code == 0, output  # before: every hashed, redacted, truncated value was "different"
    assert {r["sink"] for r in report["results"]} == {"pg", "maria", "lite", "history"}
    compared = set(report["results"][0]["columns_compared"])
    assert compared == {"id", "email", "full_name", "note", "photo", "plan"}  # ssn: excluded, not compared

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
    done = pipeline.cdc("reconcile", "--sink", "pg", "--report", str(report_path), "--wait", "20")
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
