"""One embedded pipeline shared by the drift and policy tests (its setup is the slow part): tables
``kinds`` (every kind of value), ``names`` (a text key) and ``people`` (columns under policies, holding
per-run secrets). Each test leaves the copies in sync, except the policy drift test, which runs last."""

from __future__ import annotations

import hashlib
import hmac
import uuid

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


def fill(p: ReconPipeline, secrets: Secrets) -> None:
    """The three tables, made and filled through the running pipeline."""
    p.extra_env[KEY_ENV] = secrets.key
    p.run_until_caught_up()  # the pipeline's start: changes after it reach the copies
    p.execute(TABLE, "INSERT INTO kinds VALUES " + ", ".join(_rows()))
    # a text key: chunks bounded by source keys in byte order ('B' < 'a' < 'é'), whatever the collation
    p.execute(
        "CREATE TABLE names (name VARCHAR(20) CHARACTER SET utf8mb4 PRIMARY KEY, v INT)",
        "INSERT INTO names VALUES "
        + ", ".join(f"('{w}{i}', {i})" for i in range(30) for w in ("a", "B", "é")),
    )
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
