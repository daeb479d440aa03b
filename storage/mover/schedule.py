"""`BatchScheduler`: the one loop that drives a plan's batches on an executor.

Walk -> batches -> executor -> progress -> stop: `run_copy` (the CLI, the localfs driver's
cross-filesystem copy) and the migration flow's copy (`storage.migration_copy`) both run
their batches through it. The executor is an object the caller opens and hands in (this
host's `BatchPool` or a `DaskExecutor`, see `storage.mover.executor`); nothing is looked up
in a process-wide registry, so a copy's parts travel as ids (job id, batch numbers) and can
run wherever the executor does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait

from storage.errors import CancelledError, SharemigError, TransientError, WorkerSetupError
from storage.mover.batch import copy_batch
from storage.mover.executor import BatchExecutor
from storage.mover.pool import POLL_SECONDS
from storage.mover.progress import job_progress
from storage.mover.results import BatchResult, Progress

log = logging.getLogger(__name__)

BATCH_RETRIES = 3
"""Attempts per batch when it fails with a transient error (a busy database, a network blip)."""


class BatchScheduler:
    """Runs batches on `pool` as they are handed in (during the walk too), retries transient
    failures, reports progress (never backwards) and stops everything on `should_stop`."""

    def __init__(
        self,
        job_id: str,
        db_url: str | None,
        pool: BatchExecutor,
        progress: Callable[[Progress], None] | None,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        self.job_id = job_id
        self.db_url = db_url
        self.pool = pool
        self.progress = progress
        self.should_stop = should_stop
        self.best_percent = 0
        self.results: list[BatchResult] = []
        self.errors: list[str] = []
        self.failures: list[SharemigError] = []
        """The batches' lasting errors themselves (their text is in `errors`)."""
        self.running: dict[Future[BatchResult], tuple[int, int]] = {}
        self.submitted: set[int] = set()
        self.avoid: dict[int, frozenset[str]] = {}
        """Per batch, the workers that could not run it (`WorkerSetupError`): not again."""

    def report(self) -> None:
        if self.progress is None:
            return
        p = job_progress(self.job_id, db_url=self.db_url)
        # Re-plans can add work; what the caller sees must still never go backwards.
        self.best_percent = max(self.best_percent, p.percent)
        p.percent = self.best_percent
        self.progress(p)

    def _submit_one(self, batch: int, attempt: int) -> None:
        fut = self.pool.submit(
            self.job_id,
            batch,
            db_url=self.db_url,
            should_stop=self.should_stop,
            avoid=self.avoid.get(batch, frozenset()),
        )
        self.running[fut] = (batch, attempt)

    def submit(self, batches: list[int]) -> None:
        """Start batches not started yet (called during the walk and after it)."""
        for batch in batches:
            if batch in self.submitted:
                continue
            self.submitted.add(batch)
            if self.pool.inline:
                self._inline(batch)
            else:
                self._submit_one(batch, 1)

    def drain(self) -> None:
        """Wait for every started batch, retrying transient failures, reporting progress."""
        try:
            while self.running:
                done, _ = wait(set(self.running), timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
                for fut in done:
                    batch, attempt = self.running.pop(fut)
                    if self._collect(fut, batch, attempt):
                        self._submit_one(batch, attempt + 1)
                if self.should_stop is not None and self.should_stop():
                    self.pool.stop()
                    for fut in self.running:
                        fut.cancel()
                self.report()
        except BaseException:
            self.pool.close(cancel=True)
            raise
        if self.should_stop is not None and self.should_stop():
            raise CancelledError("copy stopped on request")

    def _inline(self, batch: int) -> None:
        for attempt in range(1, BATCH_RETRIES + 1):
            fut: Future[BatchResult] = Future()
            try:
                fut.set_result(
                    copy_batch(
                        self.job_id,
                        batch,
                        db_url=self.db_url,
                        should_stop=self.should_stop,
                        throttle=self.pool.throttle,
                    )
                )
            except CancelledError:
                raise
            except SharemigError as exc:
                fut.set_exception(exc)
            if not self._collect(fut, batch, attempt):
                break
        self.report()

    def _collect(self, fut: Future[BatchResult], batch: int, attempt: int) -> bool:
        """Record a finished batch; True when it should be tried again."""
        if fut.cancelled():
            return False
        exc = fut.exception()
        if exc is None:
            self.results.append(fut.result())
            return False
        if isinstance(exc, CancelledError):
            return False
        if isinstance(exc, WorkerSetupError):
            log.warning("batch %d: %s", batch, exc)
            self.avoid[batch] = self.avoid.get(batch, frozenset()) | {exc.worker}
        if isinstance(exc, TransientError) and attempt < BATCH_RETRIES:
            return True
        if isinstance(exc, SharemigError):
            self.errors.append(f"batch {batch}: {exc}")
            self.failures.append(exc)
            return False
        raise exc
