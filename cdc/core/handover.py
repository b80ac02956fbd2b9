"""What a reader thread hands to the daemon's thread: chunks of records, then the end of the stream.

In the vocabulary so that the daemon's pump and the snapshotter's merging pump (which wraps it) speak
the same terms without the snapshotter importing the daemon.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdc.core.events import SourceRecord

__all__ = ["Chunk", "EndOfStream"]


@dataclass(frozen=True, slots=True)
class EndOfStream:
    """The reader stopped: ``error`` is None when the source said the stream ended (non-blocking)."""

    error: BaseException | None = None


Chunk = list[SourceRecord] | EndOfStream
