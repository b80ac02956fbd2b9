"""The workload of the trust fault test: every shape of change that once lost, doubled or wedged data.

Primary-key changes, ADD / RENAME / DROP COLUMN mid-stream, TRUNCATE, a keyless table with identical
rows, a 5 MB row, a savepoint rolled back inside a transaction that also wrote a MyISAM table, reserved
words as table and column names, and writes to a database the pipeline does not capture. The test
compares the copies with the source at the end, so the workload only has to write; it keeps no
expectations of its own.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

import pymysql

from cdc.devstack.connections import StackConnections

BLOB_BYTES = 5 * 1024 * 1024

# (statement, ...) run once each when the workload reaches that many transactions
SCHEMA_STEPS = {
    40: "ALTER TABLE evolving ADD COLUMN c INT NULL",
    90: "ALTER TABLE evolving RENAME COLUMN a TO a2",
    140: "ALTER TABLE evolving DROP COLUMN b",
}


@dataclass
class TrustWorkload:
    conns: StackConnections
    db: str
    noise_db: str
    seed: int
    stop: threading.Event = field(default_factory=threading.Event)
    transactions: int = 0
    error: BaseException | None = None
    steps_done: list[str] = field(default_factory=list)

    def connect(self, db: str | None = None) -> pymysql.Connection:  # type: ignore[type-arg]
        return self.conns.mariadb.connect_root(database=db or self.db, charset="utf8mb4", autocommit=False)

    def create(self) -> None:
        with self.conns.mariadb.connect_root(autocommit=True) as conn, conn.cursor() as cur:
            for db in (self.db, self.noise_db):
                cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
                cur.execute(f"CREATE DATABASE `{db}`")
            d = self.db
            cur.execute(
                f"CREATE TABLE `{d}`.accounts (id INT PRIMARY KEY, ver INT NOT NULL, "
                "balance DECIMAL(12,2) NOT NULL, note VARCHAR(50) CHARACTER SET utf8mb4)"
            )
            cur.execute(f"CREATE TABLE `{d}`.`order` (id INT PRIMARY KEY, `group` VARCHAR(20), `user` INT)")
            cur.execute(f"CREATE TABLE `{d}`.evolving (id INT PRIMARY KEY, a VARCHAR(20), b INT)")
            cur.execute(f"CREATE TABLE `{d}`.keyless (k INT NOT NULL, v VARCHAR(20))")
            cur.execute(f"CREATE TABLE `{d}`.blobs (id INT PRIMARY KEY, data LONGBLOB)")
            cur.execute(f"CREATE TABLE `{d}`.truncme (id INT PRIMARY KEY, v INT)")
            cur.execute(
                f"CREATE TABLE `{d}`.side (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(20)) ENGINE=MyISAM"
            )
            cur.execute(f"CREATE TABLE `{self.noise_db}`.noise (id INT AUTO_INCREMENT PRIMARY KEY, pad TEXT)")

    def run(self, seconds: float) -> None:
        rng = random.Random(self.seed)
        deadline = time.monotonic() + seconds
        next_id = {"accounts": 1, "order": 1, "evolving": 1, "truncme": 1}
        evolving_cols = ["a", "b"]
        blob_written = False
        try:
            conn = self.connect()
            while not self.stop.is_set() and time.monotonic() < deadline:
                step = SCHEMA_STEPS.get(self.transactions)
                with conn.cursor() as cur:
                    if step is not None and step not in self.steps_done:
                        cur.execute(step)
                        self.steps_done.append(step)
                        evolving_cols = _evolving_columns(self.steps_done)
                    kind = rng.random()
                    if kind < 0.25:
                        rows = [
                            (next_id["accounts"] + i, 1, rng.randint(0, 9999), "n")
                            for i in range(rng.randint(1, 8))
                        ]
                        next_id["accounts"] += len(rows)
                        cur.executemany("INSERT INTO accounts VALUES (%s, %s, %s, %s)", rows)
                    elif kind < 0.40:
                        cur.execute(
                            "UPDATE accounts SET ver = ver + 1, balance = balance + 1 ORDER BY RAND() LIMIT 3"
                        )
                    elif kind < 0.48:
                        # primary-key change: the old key must disappear everywhere
                        cur.execute("SELECT id FROM accounts ORDER BY RAND() LIMIT 1")
                        found = cur.fetchone()
                        if found is not None:
                            new = next_id["accounts"]
                            next_id["accounts"] += 1
                            cur.execute(
                                "UPDATE accounts SET id = %s, ver = ver + 1 WHERE id = %s", (new, found[0])
                            )
                    elif kind < 0.53:
                        cur.execute("DELETE FROM accounts ORDER BY RAND() LIMIT 1")
                    elif kind < 0.61:
                        i = next_id["order"]
                        next_id["order"] += 1
                        cur.execute("INSERT INTO `order` VALUES (%s, %s, %s)", (i, f"g{i % 7}", i))
                        cur.execute("UPDATE `order` SET `group` = 'moved' WHERE id = %s", (max(1, i - 3),))
                    elif kind < 0.72:
                        i = next_id["evolving"]
                        next_id["evolving"] += 1
                        values = {"a": f"a{i}", "a2": f"a{i}", "b": i, "c": i * 10}
                        names = ["id", *evolving_cols]
                        cols = ", ".join(names)
                        marks = ", ".join(["%s"] * len(names))
                        cur.execute(
                            f"INSERT INTO evolving ({cols}) VALUES ({marks})",
                            (i, *(values[c] for c in evolving_cols)),
                        )
                        text_col = "a2" if "a2" in evolving_cols else "a"
                        cur.execute(
                            f"UPDATE evolving SET {text_col} = CONCAT({text_col}, '+') WHERE id = %s",
                            (max(1, i - 2),),
                        )
                    elif kind < 0.80:
                        # keyless: identical rows are normal; one copy deleted, one updated
                        k = rng.randint(1, 5)
                        cur.executemany("INSERT INTO keyless VALUES (%s, %s)", [(k, "same"), (k, "same")])
                        cur.execute("DELETE FROM keyless WHERE k = %s AND v = 'same' LIMIT 1", (k,))
                        cur.execute(
                            "UPDATE keyless SET v = 'changed' WHERE k = %s AND v = 'same' LIMIT 1", (k,)
                        )
                    elif kind < 0.86:
                        i = next_id["truncme"]
                        next_id["truncme"] += 3
                        cur.executemany("INSERT INTO truncme VALUES (%s, %s)", [(i + j, j) for j in range(3)])
                        if rng.random() < 0.15:
                            conn.commit()
                            cur.execute("TRUNCATE TABLE truncme")
                    elif kind < 0.91:
                        # a savepoint undone in a transaction that also wrote a non-transactional table:
                        # the binlog carries the undone rows, which must not be applied
                        i = next_id["accounts"]
                        next_id["accounts"] += 3
                        # a transactional write first: the MyISAM row then joins the transaction's cache
                        cur.execute("INSERT INTO accounts VALUES (%s, 1, 0, 'before')", (i + 2,))
                        cur.execute("INSERT INTO side (note) VALUES ('kept')")
                        cur.execute("SAVEPOINT sp1")
                        cur.execute("INSERT INTO accounts VALUES (%s, 1, 1, 'phantom')", (i,))
                        cur.execute("ROLLBACK TO SAVEPOINT sp1")
                        cur.execute("INSERT INTO accounts VALUES (%s, 1, 2, 'real')", (i + 1,))
                    elif kind < 0.93 and not blob_written and self.transactions > 20:
                        cur.execute("INSERT INTO blobs VALUES (1, %s)", (rng.randbytes(BLOB_BYTES),))
                        blob_written = True
                    else:
                        # not captured: must move the checkpoint without reaching any sink
                        cur.execute(f"INSERT INTO `{self.noise_db}`.noise (pad) VALUES (%s)", ("z" * 2000,))
                conn.commit()
                self.transactions += 1
                time.sleep(rng.random() * 0.02)
            with conn.cursor() as cur:
                for step in SCHEMA_STEPS.values():  # every schema change happens, however short the run
                    if step not in self.steps_done:
                        cur.execute(step)
                        self.steps_done.append(step)
                if not blob_written:
                    cur.execute("INSERT INTO blobs VALUES (1, %s)", (rng.randbytes(BLOB_BYTES),))
            conn.commit()
            conn.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            self.error = exc


def _evolving_columns(steps: list[str]) -> list[str]:
    cols = ["a", "b"]
    for step in steps:
        if "ADD COLUMN c" in step:
            cols.append("c")
        elif "RENAME COLUMN a TO a2" in step:
            cols[cols.index("a")] = "a2"
        elif "DROP COLUMN b" in step:
            cols.remove("b")
    return cols
