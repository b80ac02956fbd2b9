"""Cost of the column policies per row change (cdc/policy): ``python benchmarks/policy_bench.py``.

A 6-column table (int key, two strings, text, blob, date) under hash, exclude, redact and
truncate, against the same table with no rule (the pass-through the daemons pay when a table has
no policy). Prints rows/s for each; nothing is asserted (DESIGN.md: speed is measured, not tested).
"""

from __future__ import annotations

import datetime as dt
import time

from cdc.config.models import PoliciesConfig
from cdc.core.events import ChangeEvent, Op
from cdc.core.positions import Gtid, Position
from cdc.core.schemas import ArrowKind, ArrowType, Column, TableRef, TableSchema
from cdc.policy import column_policies

ROWS = 200_000


def _events(table: str) -> list[ChangeEvent]:
    cols = (
        Column("id", "int", ArrowType(ArrowKind.INT32), nullable=False),
        Column("email", "varchar(100)", ArrowType(ArrowKind.STRING)),
        Column("ssn", "varchar(20)", ArrowType(ArrowKind.STRING)),
        Column("name", "varchar(50)", ArrowType(ArrowKind.STRING)),
        Column("note", "text", ArrowType(ArrowKind.STRING)),
        Column("born", "date", ArrowType(ArrowKind.DATE)),
    )
    schema = TableSchema.build(TableRef("app", table), cols, ("id",))
    pos = Position(Gtid(0, 1, 1), "bin.000001", 4)
    return [
        ChangeEvent(
            Op.CREATE,
            schema,
            (i,),
            None,
            (i, f"user{i}@example.org", f"{i:09d}", f"Name {i}", "a note " * 10, dt.date(1990, 1, 1)),
            pos,
            0,
            "0-1-1",
        )
        for i in range(ROWS)
    ]


def main() -> None:
    config = PoliciesConfig.model_validate(
        {
            "hash_key_env": "K",
            "tables": {
                "app.users": {"email": "hash", "ssn": "exclude", "name": "redact", "note": {"truncate": 8}}
            },
        }
    )
    policies = column_policies(config, {"K": "x" * 32})
    assert policies is not None
    for table in ("users", "other"):
        events = _events(table)
        start = time.perf_counter()
        for event in events:
            policies.event(event)
        took = time.perf_counter() - start
        label = "4 policies" if table == "users" else "no policy (pass-through)"
        print(f"{label}: {ROWS / took:,.0f} rows/s ({took / ROWS * 1e6:.2f} us/row)")


if __name__ == "__main__":
    main()
