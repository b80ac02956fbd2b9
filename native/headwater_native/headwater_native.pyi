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
