"""What `cdc bootstrap --sink` reports: progress after each batch, and the result."""

from __future__ import annotations

from dataclasses import dataclass, field

from cdc.core.errors import TerminalError
from cdc.core.positions import Position, RestartPoint
from cdc.core.schemas import TableRef

__all__ = ["FillProgress", "FillResult", "SinkFillInterfered", "TableFilled"]


class SinkFillInterfered(TerminalError):
    """The sink moved past the fill's own positions: something else wrote it meanwhile."""


@dataclass(frozen=True, slots=True)
class FillProgress:
    """Told after each chunk lands (and once per table at its end)."""

    sink: str
    table: TableRef
    table_rows: int  # rows of this table in the sink so far (this fill)
    total_rows: int  # rows of every table so far (this fill, earlier runs included)
    chunk_rows: int
    rows_per_s: float  # this run's rate
    table_done: bool
    estimated_rows: int  # every table's row count as the server estimates it (InnoDB: +-~50%)

    @property
    def eta_s(self) -> float | None:
        """Seconds left at this run's rate, by the server's estimate; None before a rate is known."""
        if self.rows_per_s <= 0:
            return None
        return max(self.estimated_rows - self.total_rows, 0) / self.rows_per_s


@dataclass(frozen=True, slots=True)
class TableFilled:
    table: TableRef
    rows: int


@dataclass(frozen=True, slots=True)
class FillResult:
    sink: str
    tables: tuple[TableFilled, ...]
    rows: int  # every row of the fill (earlier runs included)
    rows_this_run: int
    seconds: float  # this run
    view: RestartPoint  # the consistent view's boundary S (the first view's, after a restart)
    applied: Position | None  # the sink's position afterwards
    resumed: bool  # this run continued a fill an earlier run started
    kafka_offsets: tuple[tuple[str, int], ...] = field(default=())

    @property
    def rows_per_s(self) -> float:
        return self.rows_this_run / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        where = f"{self.view.transaction.file}:{self.view.binlog_offset}"
        then = (
            "`cdc sink` continues it from the end offsets taken before the view"
            if self.kafka_offsets
            else "`cdc run` continues it with the changes after that boundary"
        )
        plural = "s" if len(self.tables) != 1 else ""
        return (
            f"sink {self.sink}: filled {self.rows} rows of {len(self.tables)} table{plural} "
            f"({', '.join(f'{t.table} {t.rows}' for t in self.tables)}) as of binlog {where}"
            f"{' (resumed)' if self.resumed else ''}; this run {self.rows_this_run} rows in "
            f"{self.seconds:.1f}s ({self.rows_per_s:,.0f} rows/s); {then}"
        )
