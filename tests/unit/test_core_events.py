import dataclasses

import pytest

from cdc.core import (
    ArrowKind,
    ArrowType,
    ChangeEvent,
    Column,
    Gtid,
    Op,
    Position,
    TableRef,
    TableSchema,
    TransactionEnd,
)


def _schema(extra: str = "") -> TableSchema:
    cols = (
        Column("id", "int", ArrowType(ArrowKind.INT32), nullable=False),
        Column("v" + extra, "decimal(65,30)", ArrowType(ArrowKind.DECIMAL, 65, 30)),
    )
    return TableSchema.build(TableRef("db", "t"), cols, ("id",))


def test_event_is_immutable() -> None:
    pos = Position(Gtid(0, 1, 9), "mysql-bin.000001", 400)
    ev = ChangeEvent(Op.CREATE, _schema(), (1,), None, (1, None), pos, 1_700_000_000_000, "0-1-9")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.op = Op.DELETE  # type: ignore[misc]
    assert ev.table == TableRef("db", "t")
    assert ev.schema_version == _schema().version
    assert Op("t") is Op.TRUNCATE


def test_schema_version_is_a_stable_fingerprint() -> None:
    assert _schema().version == _schema().version
    assert _schema().version != _schema("2").version
    assert _schema().key_indexes() == (0,)
    with pytest.raises(ValueError):
        TableSchema.build(TableRef("db", "t"), _schema().columns, ("nope",))


def test_arrow_type_strings() -> None:
    assert str(ArrowType(ArrowKind.DECIMAL, 65, 30)) == "decimal256(65, 30)"
    assert str(ArrowType(ArrowKind.DECIMAL, 10, 2)) == "decimal128(10, 2)"
    assert str(ArrowType(ArrowKind.TIMESTAMP_UTC)) == "timestamp[us, tz=UTC]"
    import pyarrow as pa  # a runtime dependency: imported here because cdc.core never imports it

    assert ArrowType(ArrowKind.DECIMAL, 65, 30).to_pyarrow() == pa.decimal256(65, 30)
    assert str(ArrowType(ArrowKind.DURATION).to_pyarrow()) == "duration[us]"


def test_transaction_end_restart_skips_the_whole_transaction() -> None:
    last = Position(Gtid(0, 1, 9), "mysql-bin.000001", 400, 2)
    end = TransactionEnd("0-1-9", last, 3, 0)
    assert end.restart.skip_rows == 3 and end.restart.transaction.row == 0
