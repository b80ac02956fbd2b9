"""The compiled event loop (``headwater_native.EventLoop``, native/headwater_native/src/event_loop.rs).

With single-row transactions the stream decoder's per-event Python (header unpacking, the GTID's
Position, the TABLE_MAP lookup, the rows event's bitmaps, the TransactionEnd) was 8-9 us of each
transaction's ~15 us on the reading thread (issue 11). The compiled loop takes whole common
transactions (GTID, TABLE_MAPs of registered tables, full-image rows events, XID or COMMIT) and
returns their records in one call; every other event, and any transaction it does not take whole,
is left at its exact place to the Python path of stream_decoder.py, which stays the reference.

Events are gathered into a batch while they can only belong to a transaction still going on (GTID,
TABLE_MAP, rows events, ANNOTATE_ROWS), and decoded at the first event that can end one or stands
between transactions: no record comes out later than before, because nothing could be emitted for
a transaction before its end anyway but its rows, which the writer only commits at the end.
"""

from __future__ import annotations

from headwater_native import EventLoop

from cdc.core.events import ChangeEvent, Op, TransactionEnd
from cdc.core.positions import Gtid, GtidState, Position, ReadContext
from cdc.sources.mariadb.binlog_format import EventType
from cdc.sources.mariadb.compiled_table import CompiledTable

__all__ = ["BATCH_BYTES", "GATHERED", "make_event_loop"]

# the event types gathered into a batch (none of them ends a transaction or stands between two)
GATHERED = frozenset(
    {EventType.GTID, EventType.TABLE_MAP, EventType.ANNOTATE_ROWS, *EventType.ROWS_V1, *EventType.ROWS_V2}
)
# a batch is decoded once it holds this much, transaction ended or not: a large transaction is
# never held whole in memory (the Python path streams the rest of it, as before)
BATCH_BYTES = 1 << 20


def make_event_loop(by_id: dict[int, tuple[CompiledTable, bytes]]) -> EventLoop:
    """A loop that keeps ``by_id`` (the decoder's table ids) as the Python path keeps it."""
    return EventLoop(
        ChangeEvent,
        Position,
        Gtid,
        TransactionEnd,
        GtidState,
        ReadContext,
        (Op.CREATE, Op.UPDATE, Op.DELETE),
        by_id,
    )
