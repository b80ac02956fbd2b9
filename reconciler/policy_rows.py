"""Source columns under a column policy (hash, redact, truncate, text): compared in Python.

The copies hold what the daemon's policy function made of each source value (a keyed HMAC, a marker,
a prefix). The same function cannot run inside MariaDB without handing it the HMAC key, so such
columns are read raw from the source and the function runs here, on the value as the binlog decoder
would give it; the rest of the row keeps its canonical text computed in SQL. The row checksum is then
computed here exactly as the SQL one is (``canonical.row_text`` and ``row_hash``), so it equals the
copy's, which is still computed inside the copy's store.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any

from cdc.core.schemas import ArrowKind
from reconciler.canonical import Engine, quote
from reconciler.model import CompareColumn

__all__ = ["policy_text", "raw_select", "row_checksum"]

_SEP = "\x1f"


def raw_select(engine: Engine, column: CompareColumn) -> str:
    """SQL reading a policy column's source value as the binlog decoder gives it."""
    q = quote(engine, column.name)
    assert column.policy is not None
    if column.policy.source_kind is ArrowKind.FLOAT32:
        # SELECT prints a FLOAT with 6 digits; the decoder widens the stored float32 exactly
        return f"CAST({q} AS DOUBLE)"
    return q


def policy_text(column: CompareColumn, raw: Any) -> str | None:
    """The canonical text of what the copies hold for a source value ``raw``."""
    policy = column.policy
    assert policy is not None
    if raw is None:
        return None
    if policy.source_kind is ArrowKind.TIMESTAMP_UTC and isinstance(raw, dt.datetime):
        raw = raw.replace(tzinfo=dt.UTC)  # the session runs in UTC; the decoder's values are aware
    value = policy.apply(raw)
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def row_checksum(columns: Sequence[CompareColumn], texts: Sequence[str | None]) -> int:
    """``row_hash(row_text(...))`` as the stores compute it, from the columns' canonical texts."""
    parts = []
    for column, text in zip(columns, texts, strict=True):
        if column.nullable:
            parts.append("~" if text is None else "=" + text)
        elif text is not None:  # MariaDB's CONCAT_WS skips a NULL
            parts.append(text)
    digest = hashlib.md5(_SEP.join(parts).encode("utf-8"), usedforsecurity=False).hexdigest()
    return int(digest[:10], 16)
