"""ReaderPump hands transactions over one by one when the source has nothing more waiting (latency),
and batches them while more input is ready (throughput: one thread hand-over per chunk, not per
transaction; single-row transactions were each a queue hand-over and a thread switch)."""

from __future__ import annotations

from collections.abc import Iterator

from cdc.core.events import SourceRecord, TransactionEnd
from cdc.core.handover import EndOfStream
from cdc.core.positions import Gtid, Position
from cdc.daemon.pump import CHUNK_RECORDS, ReaderPump


def _ends(n: int) -> list[SourceRecord]:
    start = Position(Gtid(0, 1, 1), "bin.000001", 4)
    return [TransactionEnd(f"0-1-{i}", start, 1, 0, 100 + i) for i in range(n)]


def _chunks(pump: ReaderPump) -> list[int]:
    pump.start()
    sizes: list[int] = []
    while True:
        chunk = pump.get(5)
        assert chunk is not None
        if isinstance(chunk, EndOfStream):
            assert chunk.error is None
            pump.stop()
            return sizes
        sizes.append(len(chunk))


def test_transactions_are_batched_while_more_input_is_ready() -> None:
    records = _ends(2 * CHUNK_RECORDS + 10)

    def source() -> Iterator[SourceRecord]:
        yield from records

    sizes = _chunks(ReaderPump(source, lambda: None, input_ready=lambda: True))
    assert sizes == [CHUNK_RECORDS, CHUNK_RECORDS, 10]


def test_each_transaction_goes_at_once_when_nothing_more_is_waiting() -> None:
    records = _ends(5)
    sizes = _chunks(ReaderPump(lambda: iter(records), lambda: None, input_ready=lambda: False))
    assert sizes == [1, 1, 1, 1, 1]
    # without a readiness probe: as before, a cut after every transaction
    assert _chunks(ReaderPump(lambda: iter(records), lambda: None)) == [1, 1, 1, 1, 1]
