"""``headwater_native.PackedValues`` (the direct consume's values in one buffer) reads like the list of
bytes it replaces, the compiled decode gives the same columns from it as from the list, and the
chunking (message_chunks.chunk_runs) cuts and joins runs of it as it does runs of lists."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError
from headwater_native import PackedValues

from cdc.core.events import Op
from cdc.stream.arrow_changes import change_columns
from cdc.stream.kafka_chunks import ChangeChunk
from cdc.stream.message_chunks import PartitionState, chunk_runs
from cdc.stream.native_columns import decode_envelopes
from tests.unit.test_sinkdecode_native import ROW_MAX, ROW_MIN, ROW_NULLS, TYPES, _event, _values

VALUES = [b"", b"a", b"bc", b"\x00\xff", b"x" * 1000, b"{}"]


def test_it_reads_like_the_list() -> None:
    packed = PackedValues(VALUES)
    assert len(packed) == len(VALUES)
    assert list(packed) == VALUES
    assert [packed[i] for i in range(len(VALUES))] == VALUES
    assert packed[-1] == VALUES[-1]
    assert packed.nbytes == sum(map(len, VALUES))
    for a, b in [(0, 6), (1, 3), (2, 2), (4, 100), (-3, None), (5, 1)]:
        part = packed[a:b]
        assert isinstance(part, PackedValues)
        assert list(part) == VALUES[a:b]
        assert list(part[1:]) == VALUES[a:b][1:]  # a slice of a slice
    assert packed[::2] == VALUES[::2]  # another step: a list
    with pytest.raises(IndexError):
        packed[6]
    with pytest.raises(IndexError):
        packed[-7]
    assert b"\n".join(packed) == b"\n".join(VALUES)  # the JSON reader's fallback
    assert not PackedValues([]) and PackedValues([b""])
    joined = PackedValues.join([packed[1:3], packed[4:], PackedValues([])])
    assert list(joined) == VALUES[1:3] + VALUES[4:]


def _state(limit: int, ends: set[str]) -> PartitionState:
    def on_error(error: KafkaError, name: str) -> None:
        assert error.code() == KafkaError._PARTITION_EOF
        ends.add(name)

    return PartitionState(frozenset({"own"}), {}, ends, on_error, None, limit)  # type: ignore[arg-type]


def _shapes(chunks: list[ChangeChunk]) -> list[tuple[str, list[bytes], list[int]]]:
    return [(c.partition, list(c.values), list(c.next_offsets)) for c in chunks]


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 100])
def test_the_chunking_is_the_same_for_packed_runs(limit: int) -> None:
    eof = KafkaError._PARTITION_EOF
    runs = [
        ("t", 0, [b"a0", b"a1", b"a2"], [1, 2, 3]),
        ("t", 1, [b"b0"], [5]),
        ("own", 0, [b"x"], [1]),
        ("t", 0, [b"a3", b"a4"], [4, 6]),
        ("t", 1, (eof, "end")),
        ("t", 2, [], []),  # only tombstones: the partition had messages
        ("t", 0, [b"a5"], [7]),
    ]
    packed = [r if len(r) == 3 else (r[0], r[1], PackedValues(r[2]), r[3]) for r in runs]
    plain_ends: set[str] = {"t:2"}
    packed_ends: set[str] = {"t:2"}
    want = chunk_runs(runs, _state(limit, plain_ends))
    got = chunk_runs(packed, _state(limit, packed_ends))
    assert _shapes(got) == _shapes(want)
    assert all(isinstance(c.values, PackedValues) for c in got)
    assert plain_ends == packed_ends == {"t:1"}
    assert sum(len(c) for c in got) == 7


def test_the_columns_are_the_same_from_packed_values() -> None:
    # the decode test's type table and edge rows (tests/unit/test_sinkdecode_native.py)
    events = [_event(Op.CREATE, 1, i, row) for i, row in enumerate((ROW_MAX, ROW_MIN, ROW_NULLS))]
    events.append(_event(Op.DELETE, 2, 0, None, ROW_MIN))
    values = _values(events)
    for part in (slice(None), slice(1, None), slice(2, 3)):
        want = change_columns(values[part], TYPES)
        got = change_columns(PackedValues(values)[part], TYPES)
        assert want is not None and got is not None
        for name in ("op", "position", "source_ts_ms", "transaction_id"):
            assert getattr(got, name).equals(getattr(want, name)), name
        assert all(a.equals(b) for a, b in zip(got.image, want.image, strict=True))
        assert all(a.equals(b) for a, b in zip(got.json_image, want.json_image, strict=True))
    assert isinstance(decode_envelopes(PackedValues([b"{"]), TYPES), str)  # a refusal, as from a list
