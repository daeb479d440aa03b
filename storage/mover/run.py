"""`run_copy`: plan, copy every batch in parallel, finish; what the CLI and benchmarks call.

Local→local batches run in worker processes (per-file Python work is CPU-bound and the
GIL would serialize it on threads); pairs involving another filesystem run on threads, since
they wait on the network and in-memory filesystems must stay in this process.

The workers come from a forkserver, never from a plain fork of the caller: a Prefect flow run
has threads (API clients, log shipping, heartbeats), and a fork while one of them holds a lock
(logging, a DB pool, the import lock) leaves the child waiting on it forever.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from typing import Any

from storage.db import dispose_engines
from storage.errors import CancelledError, SharemigError, TransientError
from storage.mover.batch import copy_batch
from storage.mover.endpoints import open_endpoint
from storage.mover.finish import finish_copy
from storage.mover.plan import default_job_id, pending_batches, plan_copy
from storage.mover.progress import job_progress
from storage.mover.results import BatchResult, CopySummary, Progress
from storage.settings import get_settings, reset_settings

POLL_SECONDS = 0.25
BATCH_RETRIES = 3
MAX_ROUNDS = 3
"""Plan/copy rounds when source files change under the copy (each round re-plans)."""

_stop_event: Any = None


def _child_should_stop() -> bool:
    return bool(_stop_event is not None and _stop_event.is_set())


def _child_init(event: Any, env: dict[str, str]) -> None:
    """Take the caller's `SHAREMIG_*` settings: the forkserver kept the environment it had."""
    global _stop_event
    _stop_event = event
    for key in [k for k in os.environ if k.startswith("SHAREMIG_")]:
        del os.environ[key]
    os.environ.update(env)
    reset_settings()
    dispose_engines()


def _sharemig_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("SHAREMIG_")}


def _child_copy(job_id: str, batch: int, db_url: str | None, limit: int | None) -> BatchResult:
    return copy_batch(
        job_id, batch, db_url=db_url, should_stop=_child_should_stop, bandwidth_limit=limit
    )


class _Runner:
    def __init__(
        self,
        job_id: str,
        db_url: str | None,
        workers: int,
        use_processes: bool,
        progress: Callable[[Progress], None] | None,
        should_stop: Callable[[], bool] | None,
        bandwidth_limit: int | None,
    ) -> None:
        self.job_id = job_id
        self.db_url = db_url
        self.workers = workers
        self.use_processes = use_processes
        self.progress = progress
        self.should_stop = should_stop
        self.limit = bandwidth_limit // workers if bandwidth_limit else None
        self.best_percent = 0
        self.results: list[BatchResult] = []
        self.errors: list[str] = []
        self.pool: Executor | None = None
        self.event: Any = None
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

    def _start_pool(self) -> None:
        if self.use_processes:
            ctx = multiprocessing.get_context("forkserver")
            # The server imports the mover once; each worker is then a cheap fork of it.
            ctx.set_forkserver_preload(["storage.mover.batch"])
            self.event = ctx.Event()
            self.pool = ProcessPoolExecutor(
                self.workers,
                mp_context=ctx,
                initializer=_child_init,
                initargs=(self.event, _sharemig_env()),
            )
        else:
            self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="sharemig-copy")

    def _submit_one(self, batch: int, attempt: int) -> None:
        if self.pool is None:
            self._start_pool()
        assert self.pool is not None
        if self.use_processes:
            fut = self.pool.submit(_child_copy, self.job_id, batch, self.db_url, self.limit)
        else:
            fut = self.pool.submit(
                copy_batch,
                self.job_id,
                batch,
                db_url=self.db_url,
                should_stop=self.should_stop,
                bandwidth_limit=self.limit,
            )
        self.running[fut] = (batch, attempt)

    def submit(self, batches: list[int]) -> None:
        """Start batches not started yet (called during the walk and after it)."""
        for batch in batches:
            if batch in self.submitted:
                continue
            self.submitted.add(batch)
            if self.workers <= 1:
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
                    if self.event is not None:
                        self.event.set()
                    for fut in self.running:
                        fut.cancel()
                self.report()
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True, cancel_futures=True)
                self.pool = None
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
                        bandwidth_limit=self.limit,
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
    source, dest = open_endpoint(source_url), open_endpoint(dest_url)
    use_processes = source.local and dest.local and hasattr(os, "fork")
    if workers is None:
        settings = get_settings()
        workers = (
            min(settings.copy_workers, os.cpu_count() or 1)
            if use_processes
            else (settings.copy_workers)
        )
    if bandwidth_limit is None:
        bandwidth_limit = get_settings().bandwidth_limit_bytes
    runner = _Runner(job_id, db_url, workers, use_processes, progress, should_stop, bandwidth_limit)
    summary = CopySummary(job_id=job_id, source_url=source.url, dest_url=dest.url)
    changed = 0
    for _ in range(MAX_ROUNDS):
        first = len(runner.results)
        runner.submitted.clear()
        plan_copy(job_id, source.url, dest.url, db_url=db_url, on_batches=runner.submit)
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
