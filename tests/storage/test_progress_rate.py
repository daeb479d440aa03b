"""`copy_rate`: the rates and ETA every view shows, never negative, shrinking on a steady copy."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from storage.progress import ENTRY_WEIGHT_BYTES, copy_percent, copy_rate


@dataclass
class Counters:
    files_planned: int
    bytes_planned: int
    files_verified: int = 0
    bytes_verified: int = 0


def test_nothing_known_before_the_first_verified_byte() -> None:
    rate = copy_rate(Counters(10, 1000), 0.0)
    assert (rate.bytes_per_s, rate.files_per_s, rate.eta_s) == (None, None, None)
    rate = copy_rate(Counters(10, 1000), 5.0)
    assert rate.bytes_per_s == 0 and rate.eta_s is None


def test_steady_copy_eta_shrinks_to_zero_as_the_bar_fills() -> None:
    files, size = 100, 1 << 20
    etas, percents = [], []
    for second in range(1, 11):  # 10 files of 1 MiB a second, for ten seconds
        c = Counters(files, files * size, second * 10, second * 10 * size)
        rate = copy_rate(c, float(second))
        assert rate.bytes_per_s == 10 * size and rate.files_per_s == 10
        etas.append(rate.eta_s)
        percents.append(copy_percent(c))
    assert etas == sorted(etas, reverse=True) and etas[-1] == 0
    assert etas[0] == 9.0  # 90 % left at the pace of 10 % a second
    assert percents == sorted(percents)


def test_between_two_moves_of_the_counters_the_eta_counts_down() -> None:
    """Counters that move 30 files at a time every 3 s (a steady copy, verified in groups),
    read every second: the ETA never grows, and the rate holds between the moves."""
    files, size = 90, 1 << 20
    etas, rates = [], []
    for second in range(1, 10):
        moved = second // 3 * 3  # the counters' last move: seconds 3, 6 and 9
        c = Counters(files, files * size, moved * 10, moved * 10 * size)
        rate = copy_rate(c, float(second), since_s=float(second - moved))
        if moved:
            etas.append(rate.eta_s)
            rates.append(rate.bytes_per_s)
    assert etas == sorted(etas, reverse=True) and etas[-1] == 0, etas
    assert etas == [6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0]
    assert set(rates) == {10 * size}


def test_a_copy_behind_its_own_pace_holds_at_zero() -> None:
    rate = copy_rate(Counters(2, 20, 1, 10), 30.0, since_s=25.0)
    assert rate.eta_s == 0 and rate.bytes_per_s == 2


def test_finished_is_zero_left() -> None:
    rate = copy_rate(Counters(1, 10, 1, 10), 2.0, finished=True)
    assert rate.eta_s == 0 and rate.bytes_per_s == 5
    assert rate.as_details() == {"bytes_per_second": 5, "files_per_second": 0.5, "eta_seconds": 0}


@given(
    st.integers(0, 10**6),
    st.integers(0, 10**12),
    st.integers(0, 10**6),
    st.integers(0, 10**12),
    st.floats(0.001, 10**6),
)
def test_never_negative(fp: int, bp: int, fv: int, bv: int, elapsed: float) -> None:
    """Even when a re-plan shrank the plan below what was verified."""
    rate = copy_rate(Counters(fp, bp, fv, bv), elapsed)
    for value in (rate.bytes_per_s, rate.files_per_s, rate.eta_s):
        assert value is None or value >= 0
    if fv * ENTRY_WEIGHT_BYTES + bv >= fp * ENTRY_WEIGHT_BYTES + bp and (fv or bv):
        assert rate.eta_s == 0
