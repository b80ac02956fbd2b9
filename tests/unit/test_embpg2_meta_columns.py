"""embedded_meta_columns.text_column gives what pa.array gives: a value repeated (one-byte and
multi-byte UTF-8, chunks longer than its cached offsets), mixed values, empty ones, refusals."""

from __future__ import annotations

import pyarrow as pa
import pytest

from cdc.daemon.embedded_meta_columns import text_column


@pytest.mark.parametrize("value", ["c", "0-1-1234", "ü€😀-7", "x" * 300])
@pytest.mark.parametrize("n", [1, 2, 1000, 40_000])
def test_a_repeated_text_is_the_array_pa_array_makes(value: str, n: int) -> None:
    values = [value] * n
    made = text_column(values)
    expected = pa.array(values, pa.string())
    assert made.equals(expected)
    assert made.type == pa.string() and made.null_count == 0 and made.offset == 0
    assert made.to_pylist()[-3:] == values[-3:]
    assert made.nbytes == expected.nbytes  # no more of the cached offsets than its own
    made.validate(full=True)


def test_after_a_long_chunk_a_short_one_is_still_exact() -> None:
    text_column(["u"] * 50_000)
    assert text_column(["u", "u", "u"]).equals(pa.array(["u"] * 3))
    assert text_column(["ab"] * 5).to_pylist() == ["ab"] * 5


@pytest.mark.parametrize(
    "values", [["c", "u", "c"], ["c", None], [None, None], [], ["", ""], ["a", "a", "b"]], ids=str
)
def test_other_columns_go_to_pa_array(values: list[str | None]) -> None:
    made = text_column(values)
    assert made.equals(pa.array(values, pa.string()))
    made.validate(full=True)


def test_what_pa_array_refuses_is_refused_and_what_it_takes_is_taken() -> None:
    for values in (["\ud800"] * 3, [b"c", b"c"], [1, 1]):
        outcomes = []
        for make in (text_column, lambda v: pa.array(v, pa.string())):
            try:
                outcomes.append(make(values).to_pylist())
            except (pa.ArrowException, UnicodeEncodeError) as exc:
                outcomes.append(type(exc))
        assert outcomes[0] == outcomes[1]
