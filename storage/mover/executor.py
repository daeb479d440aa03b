"""What `BatchScheduler` runs batches on, and the one place that picks it for a copy.

Two executors: this host's `BatchPool` (processes or threads; the default) and `DaskExecutor`
(the workers of a Dask distributed scheduler, when `SHAREMIG_DASK_ADDRESS` names one). The
caller opens one per copy, hands it to the scheduler and closes it; none is kept anywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import Protocol

from storage.mover.endpoints import open_endpoint
from storage.mover.pool import open_pool
from storage.mover.pool_budget import BudgetSpec
from storage.mover.results import BatchResult
from storage.mover.throttle import Pacer
from storage.settings import get_settings

log = logging.getLogger(__name__)


class BatchExecutor(Protocol):
    """Runs `copy_batch` calls somewhere; every batch of one copy goes through one of these."""

    workers: int
    """Batches that may run at once."""

    @property
    def throttle(self) -> Pacer | None:
        """The bandwidth limit shared by batches run in this process (`inline`)."""
        ...

    @property
    def inline(self) -> bool:
        """True when batches are better run in the caller, one after another."""
        ...

    def describe(self) -> str:
        """Where batches run, for the run's log."""
        ...

    def submit(
        self,
        job_id: str,
        batch: int,
        *,
        db_url: str | None = None,
        should_stop: Callable[[], bool] | None = None,
        avoid: frozenset[str] = frozenset(),
    ) -> Future[BatchResult]:
        """Start one batch; `avoid` names workers that could not run it before."""
        ...

    def stop(self) -> None:
        """Make every running batch stop at its next file boundary (`CancelledError`)."""
        ...

    def close(self, *, cancel: bool = False) -> None: ...

    def __enter__(self) -> BatchExecutor: ...

    def __exit__(self, *exc: object) -> None: ...


def _in_process(url: str) -> bool:
    fs = open_endpoint(url).fs
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    return "memory" in protocols


def open_executor(
    source_url: str,
    dest_url: str,
    *,
    workers: int | None = None,
    bandwidth_limit: int | None = None,
    budget: tuple[BudgetSpec, ...] = (),
    db_url: str | None = None,
    dask_address: str | None = None,
) -> BatchExecutor:
    """The executor for copying `source_url` to `dest_url`: the Dask cluster at
    `dask_address` (default `settings.dask_address`) when one is named, else this host's
    pool. A copy that cannot leave this process says so in the log instead of falling back
    in silence; an address that does not answer raises `DaskUnreachableError`. `budget`:
    the pools' shared bandwidth budgets, taken by this host's pool (not yet by Dask
    batches, which the log says)."""
    settings = get_settings()
    address = dask_address or settings.dask_address
    if address:
        kept = [url for url in (source_url, dest_url) if _in_process(url)]
        if not kept:
            from storage.mover.dask_executor import open_dask

            if budget:
                log.warning(
                    "copy batches run on the Dask scheduler %s: the pools' shared bandwidth "
                    "budgets (%s) are not applied to them, only the per-copy limit",
                    address,
                    ", ".join(b.pool for b in budget),
                )
            return open_dask(address, source_url, dest_url, bandwidth_limit=bandwidth_limit)
        log.warning(
            "the Dask scheduler %s is configured, but %s is an in-memory filesystem of this "
            "process that no Dask worker can reach: this copy runs on this host's pool",
            address,
            kept[0],
        )
    return open_pool(
        source_url,
        dest_url,
        workers=workers,
        bandwidth_limit=bandwidth_limit,
        budget=budget,
        db_url=db_url,
    )
