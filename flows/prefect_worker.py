"""`python -m flows.prefect_worker worker start ARGS`: Prefect's own CLI (`prefect worker start
ARGS`) with a memory housekeeper beside it; what `sharemig up` runs for each worker.

A Prefect process worker's live Python objects stay flat over hundreds of flow runs
(tracemalloc, 200 short runs: 58.8 MB after 50, 100 and 200), yet its RSS climbs, 110 →
155 MB over those runs and +27 % from the soak's 50th migration to its 200th: each run leaves
cyclic garbage (events, API responses, anyio task state) that waits for a full collection,
which a heap of half a million objects rarely triggers, and the allocator keeps what is freed
late. A full collection and `malloc_trim` every `HOUSEKEEPING_S` hand it back: 97-110 MB over
the same 200 runs (bench/README.md, the soak's section).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
import threading
from collections.abc import Callable

HOUSEKEEPING_S = 10.0
"""A full collection of the worker's heap takes tens of milliseconds: under 1 % of a core."""


def _malloc_trim() -> Callable[[], object] | None:
    """glibc's `malloc_trim(0)` (free pages back to the kernel), or None on another libc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None)
    if trim is None:
        return None
    return lambda: trim(0)


def start_housekeeper(every_s: float = HOUSEKEEPING_S) -> threading.Event:
    """Collect and trim every `every_s` on a daemon thread; set the returned event to stop."""
    trim = _malloc_trim()
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(every_s):
            gc.collect()
            if trim is not None:
                trim()

    threading.Thread(target=run, name="sharemig-memory", daemon=True).start()
    return stop


def main(argv: list[str]) -> None:
    from prefect.cli import app

    start_housekeeper()
    sys.argv = ["prefect", *argv]
    app()


if __name__ == "__main__":
    main(sys.argv[1:])
