from __future__ import annotations

import pytest

from worker.storage.shapes import padded, power_of_two_chunks


@pytest.mark.parametrize(
    ("count", "sizes"),
    [(0, []), (1, [1]), (2, [2]), (3, [2, 1]), (13, [8, 4, 1]), (16, [16]), (31, [16, 8, 4, 2, 1])],
)
def test_chunks_are_powers_of_two_largest_first_and_keep_the_order(
    count: int, sizes: list[int]
) -> None:
    rows = list(range(count))

    chunks = list(power_of_two_chunks(rows))

    assert [len(chunk) for chunk in chunks] == sizes
    assert [row for chunk in chunks for row in chunk] == rows


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["a"], ["a"]),
        (["a", "b"], ["a", "b"]),
        (["a", "b", "c"], ["a", "b", "c", "c"]),
        (list("abcde"), list("abcdeeee")),
    ],
)
def test_padded_repeats_the_last_value_up_to_a_power_of_two(
    values: list[str], expected: list[str]
) -> None:
    assert padded(values) == expected


def test_padding_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="no values"):
        padded([])
