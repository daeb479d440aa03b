"""`weighted_percent`, the one progress formula: bounded, 100 only when finished, and a
share of small files moves the number as one of big files does (rates: test_progress_rate)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from storage.progress import ENTRY_WEIGHT_BYTES, weighted_percent


def test_files_count_as_work() -> None:
    assert weighted_percent(bytes_done=0, bytes_total=0, entries_done=250, entries_total=1000) == 25
    half = weighted_percent(
        bytes_done=ENTRY_WEIGHT_BYTES,
        bytes_total=ENTRY_WEIGHT_BYTES,
        entries_done=0,
        entries_total=1,
    )
    assert half == 50  # an empty file weighs as much as its entry's bytes


def test_nothing_planned_is_0_and_finished_is_100() -> None:
    assert weighted_percent(bytes_done=0, bytes_total=0, entries_done=0, entries_total=0) == 0
    done = dict(bytes_done=10, bytes_total=10, entries_done=1, entries_total=1)
    assert weighted_percent(**done) == 99  # all counted: the finish step still shows
    assert weighted_percent(**done, finished=True) == 100


@given(st.integers(0, 10**12), st.integers(0, 10**12), st.integers(0, 10**6), st.integers(0, 10**6))
def test_bounded_even_when_a_replan_shrank_the_total(
    bytes_done: int, bytes_total: int, entries_done: int, entries_total: int
) -> None:
    percent = weighted_percent(
        bytes_done=bytes_done,
        bytes_total=bytes_total,
        entries_done=entries_done,
        entries_total=entries_total,
    )
    assert 0 <= percent <= 99
