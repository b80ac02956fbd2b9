"""Headwater's compiled hot path (native/headwater_native/src/lib.rs)."""

from collections.abc import Callable, Sequence
from typing import Any

__version__: str

class RowPlan:
    """How one table version's row images become JSON objects; built once per schema version.

    ``heads[i]`` is the bytes before column i's value (``{"name":`` then ``,"name":``); ``kinds[i]``
    0 auto (null/bool/int/str), 1 bytes as base64, 2 naive datetime, 3 UTC datetime ("Z"), 4 always
    the fallback, 5 decimal.Decimal in plain notation; ``fsps[i]`` the datetime's fraction digits; ``fallbacks[i](value)`` the value's JSON
    bytes for anything not written natively.
    """

    def __init__(
        self,
        heads: Sequence[bytes],
        kinds: Sequence[int],
        fsps: Sequence[int],
        fallbacks: Sequence[Callable[[Any], bytes]],
    ) -> None: ...
    def encode(self, row: tuple[Any, ...]) -> bytes:
        """The row's JSON object."""
    def envelope(
        self,
        before: tuple[Any, ...] | None,
        after: tuple[Any, ...] | None,
        head: bytes,
        middle: bytes,
        tail: bytes,
    ) -> bytes:
        """``head + before + middle + after + tail`` with each image encoded (null when None)."""
    def change(
        self,
        before: tuple[Any, ...] | None,
        after: tuple[Any, ...] | None,
        source_head: bytes,
        row: int,
        position_head: bytes,
        position_tail: bytes,
        op: bytes,
        ts_ms: int,
    ) -> bytes:
        """A change envelope from its transaction's cached source block: ``{"before":..,"after":..,
        "source":`` + source_head + row + ``,"position":"`` + position_head + row in 10 digits +
        position_tail + ``"},"op":"`` + op + ``","ts_ms":`` + ts_ms + ``,"transaction":null}``."""

class RowsPlan:
    """How one table shape's binlog row images become tuples; built once per TABLE_MAP by
    ``cdc.sources.mariadb.native_rows`` (which documents the column kinds).

    Each column is ``(kind, size, extra, nullable, helper)``: integers, floats, YEAR, BIT, valid
    UTF-8 text and binary strings are made natively; other values' bytes go to ``helper``.
    """

    def __init__(self, columns: Sequence[tuple[int, int, int, bool, Any]]) -> None: ...
    def decode_rows(self, data: bytes, pos: int, end: int) -> list[tuple[Any, ...]]:
        """Full row images between ``pos`` and ``end`` of ``data`` (write and delete events)."""
    def decode_updates(
        self, data: bytes, pos: int, end: int
    ) -> list[tuple[tuple[Any, ...], tuple[Any, ...]]]:
        """(before, after) image pairs between ``pos`` and ``end`` (update events)."""

class EventMaker:
    """The ChangeEvents of a write or delete rows event, built in one call (slots filled as
    ``object.__setattr__`` fills them); see ``cdc.sources.mariadb.native_rows.EVENT_MAKER``."""

    def __init__(self, event_cls: type, position_cls: type) -> None: ...
    def changes(
        self,
        op: Any,
        schema: Any,
        key_indexes: Sequence[int],
        inserted: bool,
        images: list[tuple[Any, ...]],
        tx_pos: Any,
        row: int,
        ts_ms: int,
        transaction_id: str,
    ) -> list[Any]:
        """One ChangeEvent per image (``after`` if ``inserted``, else ``before``), at rows
        ``row``, ``row + 1``... of the transaction at ``tx_pos``; key None if ``key_indexes`` is empty."""
