"""The BEGIN and END records of the transaction metadata topic (Debezium's shape), as key and value bytes."""

from __future__ import annotations

from cdc.stream.envelope import dumps

__all__ = ["begin_marker", "end_marker"]


def begin_marker(txn_id: str, ts_ms: int) -> tuple[bytes, bytes]:
    value = {"status": "BEGIN", "id": txn_id, "event_count": None, "data_collections": None, "ts_ms": ts_ms}
    return dumps({"id": txn_id}), dumps(value)


def end_marker(txn_id: str, total: int, tables: dict[str, int], ts_ms: int) -> tuple[bytes, bytes]:
    value = {
        "status": "END",
        "id": txn_id,
        "event_count": total,
        "data_collections": [{"data_collection": name, "event_count": n} for name, n in tables.items()],
        "ts_ms": ts_ms,
    }
    return dumps({"id": txn_id}), dumps(value)
