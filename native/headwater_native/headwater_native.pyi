"""Headwater's compiled hot path (native/headwater_native/src/lib.rs)."""

from collections.abc import Callable, Sequence
from typing import Any

__version__: str

class RowPlan:
    """How one table version's row images become JSON objects; built once per schema version.

    ``heads[i]`` is the bytes before column i's value (``{"name":`` then ``,"name":``); ``kinds[i]``
    0 auto (null/bool/int/str), 1 bytes as base64, 2 naive datetime, 3 UTC datetime ("Z"), 4 always
    the fallback; ``fsps[i]`` the datetime's fraction digits; ``fallbacks[i](value)`` the value's JSON
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
