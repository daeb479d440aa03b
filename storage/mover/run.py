"""`run_copy`: plan, copy every batch in parallel, finish; what the CLI and benchmarks call.

Batches run on a `BatchPool` (processes for local pairs, threads otherwise), started while
the walk still goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait

from storage.errors import CancelledError, SharemigError, TransientError
from storage.mover.audit import requeue_damaged
from storage.mover.batch import copy_batch
from storage.mover.endpoints import normalize_url
from storage.mover.finish import finish_copy
from storage.mover.plan import default_job_id, pending_batches, plan_copy
from storage.mover.pool import POLL_SECONDS, BatchPool, open_pool, prestart
from storage.mover.progress import job_progress
from storage.mover.results import BatchResult, CopySummary, Progress

BATCH_RETRIES = 3
MAX_ROUNDS = 3
"""Plan/copy rounds when source files change under the copy (each round re-plans)."""


class _Runner:
    def __init__(
        self,
        job_id: str,
        db_url: str | None,
        pool: BatchPool,
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
        self.running: dict[Future[BatchResult], tuple[int, int]] = {}
        self.submitted: set[int] = set()

    def report(self) -> None:
        if self.progress is None:
            return
        p = job_progress(self.job_id, db_url=self.db_url)
        # Re-plans can add work; what the caller sees must still never go backwards.
        self.best_percent = max(self.best_percent, p.percent)
        p.percent = self.best_percent
        self.progress(p)

    def _submit_one(self, batch: int, attempt: int) -> None:
        fut = self.pool.submit(self.job_id, batch, db_url=self.db_url, should_stop=self.should_stop)
        self.running[fut] = (batch, attempt)

    def submit(self, batches: list[int]) -> None:
        """Start batches not started yet (called during the walk and after it)."""
        for batch in batches:
            if batch in self.submitted:
                continue
            self.submitted.add(batch)
            if self.pool.workers <= 1:
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
        if isinstance(exc, TransientError) and attempt < BATCH_RETRIES:
            return True
        if isinstance(exc, SharemigError):
            self.errors.append(f"batch {batch}: {exc}")
            return False
        raise exc


def run_copy(
    source_url: str,
    dest_url: str,
    *,
    job_id: str | None = None,
    db_url: str | None = None,
    workers: int | None = None,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    bandwidth_limit: int | None = None,
) -> CopySummary:
    """Plan, copy and verify every batch, finish. A re-run with the same URLs resumes the
    same job (verified files are not copied again) and syncs what changed since."""
    started = time.perf_counter()
    job_id = job_id or default_job_id(source_url, dest_url)
    pool = open_pool(source_url, dest_url, workers=workers, bandwidth_limit=bandwidth_limit)
    if pool.processes and pool.workers > 1:
        prestart(source_url, dest_url)
    source_url, dest_url = normalize_url(source_url), normalize_url(dest_url)
    summary = CopySummary(job_id=job_id, source_url=source_url, dest_url=dest_url)
    # A re-run trusts the manifest only where the destination still holds what it verified.
    summary.repaired = len(requeue_damaged(job_id, dest_url, db_url=db_url))
    changed = 0
    with pool:
        runner = _Runner(job_id, db_url, pool, progress, should_stop)
        for _ in range(MAX_ROUNDS):
            first = len(runner.results)
            runner.submitted.clear()
            plan_copy(job_id, source_url, dest_url, db_url=db_url, on_batches=runner.submit)
            runner.submit(pending_batches(job_id, db_url=db_url))
            runner.drain()
            changed = sum(r.changed for r in runner.results[first:])
            if not changed:
                break
    fin = finish_copy(job_id, db_url=db_url)
    runner.report()
    p = job_progress(job_id, db_url=db_url)
    for r in runner.results:
        summary.files_copied += r.files_copied
        summary.bytes_copied += r.bytes_copied
        summary.recopies += r.recopies
        summary.failed.extend(r.failed)
        for key, n in r.not_preserved.items():
            summary.not_preserved[key] = summary.not_preserved.get(key, 0) + n
    summary.failed.extend(runner.errors)
    summary.files, summary.bytes = p.files_planned, p.bytes_planned
    summary.files_verified, summary.bytes_verified = p.files_verified, p.bytes_verified
    summary.files_already_verified = max(0, p.files_verified - summary.files_copied)
    summary.skipped = p.skipped
    summary.changed = changed
    summary.removed = fin.removed
    summary.complete = fin.complete and not summary.failed
    summary.seconds = time.perf_counter() - started
    return summary
