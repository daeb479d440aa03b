"""The one progress formula: verified bytes plus a weight per entry, as a 0-100 percentage.

The API's `total_progress`, the Prefect artifact, `sharemig status` and `sharemig copy` all
come from `weighted_percent`, so they agree on a share of small files as on one of big ones;
their rates and ETA come from `copy_rate`, over the same weighted units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

ENTRY_WEIGHT_BYTES = 64 * 1024
"""Each file counts as this many bytes of work: creating an entry and its metadata costs time
even when the file is empty, so a share of many small files still shows its progress."""


def weighted_percent(
    *,
    bytes_done: int,
    bytes_total: int,
    entries_done: int,
    entries_total: int,
    finished: bool = False,
) -> int:
    """0-100; 100 only once the work is `finished` (all verified), so the last step shows."""
    if finished:
        return 100
    total = bytes_total + entries_total * ENTRY_WEIGHT_BYTES
    if total <= 0:
        return 0
    done = bytes_done + entries_done * ENTRY_WEIGHT_BYTES
    return max(0, min(99, done * 100 // total))


class CopyCounters(Protocol):
    @property
    def files_planned(self) -> int: ...
    @property
    def bytes_planned(self) -> int: ...
    @property
    def files_verified(self) -> int: ...
    @property
    def bytes_verified(self) -> int: ...


def copy_percent(counters: CopyCounters, *, finished: bool = False) -> int:
    """`weighted_percent` of a migration's verified counters (files are its entries)."""
    return weighted_percent(
        bytes_done=counters.bytes_verified,
        bytes_total=counters.bytes_planned,
        entries_done=counters.files_verified,
        entries_total=counters.files_planned,
        finished=finished,
    )


@dataclass(frozen=True)
class Rate:
    """How fast verified work goes and when it will be done; None where it is not known yet."""

    bytes_per_s: float | None
    files_per_s: float | None
    eta_s: float | None

    def as_details(self) -> dict[str, float | None]:
        """The keys the API `details`, `sharemig status` and the artifact show (rounded)."""
        return {
            "bytes_per_second": None if self.bytes_per_s is None else round(self.bytes_per_s),
            "files_per_second": None if self.files_per_s is None else round(self.files_per_s, 1),
            "eta_seconds": None if self.eta_s is None else round(self.eta_s),
        }


def copy_rate(
    counters: CopyCounters, elapsed_s: float, *, finished: bool = False, since_s: float = 0.0
) -> Rate:
    """Average rates from the copy's start to the last move of its verified counters, and the
    time left at that pace, in the same weighted units as `copy_percent`, so the ETA reaches
    0 exactly when the bar reaches 100.

    `since_s`: how long ago the counters last moved. They move a group of files at a time;
    between two moves the ETA counts down with the clock (an average taken up to now would
    fall and make it grow), and it holds at 0 when the copy falls behind its own pace.
    Never negative; unknown (None) before anything is verified or while no time has passed.
    On a steady copy the remaining work falls while the rate holds, so the ETA shrinks."""
    timed = elapsed_s - max(0.0, since_s)
    if timed <= 0:
        return Rate(None, None, 0.0 if finished else None)
    bytes_per_s = max(0, counters.bytes_verified) / timed
    files_per_s = max(0, counters.files_verified) / timed
    if finished:
        return Rate(bytes_per_s, files_per_s, 0.0)
    done = weighted_work(files=counters.files_verified, bytes_=counters.bytes_verified)
    total = weighted_work(files=counters.files_planned, bytes_=counters.bytes_planned)
    if done <= 0:
        return Rate(bytes_per_s, files_per_s, None)
    left = max(0, total - done)
    return Rate(bytes_per_s, files_per_s, max(0.0, left / (done / timed) - max(0.0, since_s)))


def weighted_work(*, files: int, bytes_: int) -> int:
    """The units `copy_percent` and `copy_rate` count: bytes plus a weight per file."""
    return bytes_ + files * ENTRY_WEIGHT_BYTES
