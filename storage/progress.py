"""The one progress formula: verified bytes plus a weight per entry, as a 0-100 percentage.

The API's `total_progress`, the Prefect artifact, `sharemig status` and `sharemig copy` all
come from `weighted_percent`, so they agree on a share of small files as on one of big ones.
"""

from __future__ import annotations

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
