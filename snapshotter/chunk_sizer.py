"""How many rows the next chunk asks for: toward a target time per chunk, within fixed bounds."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ChunkSizer"]


@dataclass
class ChunkSizer:
    """Adapts the LIMIT of keyset chunks toward ``target_s`` seconds each.

    The bounds matter more than the target: ``max_rows`` bounds memory (one chunk's rows are held at
    once) and the stream's hold-back while the coordinator merges a chunk; ``min_rows`` keeps a slow
    moment (a busy server, a page of huge rows) from shrinking chunks to a crawl. A step changes the
    limit by at most ``max_step`` times either way, so one odd chunk does not swing it.
    """

    target_s: float = 0.5
    min_rows: int = 1_000
    max_rows: int = 100_000
    initial_rows: int = 10_000
    max_step: float = 2.0
    limit: int = field(init=False)

    def __post_init__(self) -> None:
        if not 1 <= self.min_rows <= self.max_rows:
            raise ValueError(f"need 1 <= min_rows <= max_rows, got {self.min_rows}, {self.max_rows}")
        if self.target_s <= 0 or self.max_step <= 1:
            raise ValueError("target_s must be positive and max_step above 1")
        self.limit = min(max(self.initial_rows, self.min_rows), self.max_rows)

    def observe(self, rows: int, elapsed_s: float) -> int:
        """Records a chunk of ``rows`` read in ``elapsed_s``; returns the next limit.

        A short last chunk (fewer rows than asked) says nothing about the rate and is ignored.
        """
        if rows >= self.limit and rows > 0:
            wanted = rows * self.target_s / max(elapsed_s, 1e-6)
            wanted = min(max(wanted, self.limit / self.max_step), self.limit * self.max_step)
            self.limit = int(min(max(wanted, self.min_rows), self.max_rows))
        return self.limit
