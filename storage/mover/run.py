"""`run_copy`: plan, copy every batch in parallel, finish; what the CLI and benchmarks call.

Batches run through the one `BatchScheduler` on the executor `open_executor` picks (this host's
pool, or the Dask cluster `SHAREMIG_DASK_ADDRESS` names), started while the walk goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from storage.mover.audit import requeue_damaged
from storage.mover.endpoints import normalize_url
from storage.mover.executor import open_executor
from storage.mover.finish import finish_copy
from storage.mover.plan import default_job_id, pending_batches, plan_copy
from storage.mover.pool import BatchPool, prestart
from storage.mover.pool_budget import BudgetSpec
from storage.mover.progress import job_progress
from storage.mover.results import CopySummary, Progress
from storage.mover.schedule import BatchScheduler

MAX_ROUNDS = 3
"""Plan/copy rounds when source files change under the copy (each round re-plans)."""


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
    budget: tuple[BudgetSpec, ...] = (),
) -> CopySummary:
    """Plan, copy and verify every batch, finish. A re-run with the same URLs resumes the
    same job (verified files are not copied again) and syncs what changed since."""
    started = time.perf_counter()
    job_id = job_id or default_job_id(source_url, dest_url)
    pool = open_executor(
        source_url,
        dest_url,
        workers=workers,
        bandwidth_limit=bandwidth_limit,
        budget=budget,
        db_url=db_url,
    )
    if isinstance(pool, BatchPool) and pool.processes and pool.workers > 1:
        prestart(source_url, dest_url)
    source_url, dest_url = normalize_url(source_url), normalize_url(dest_url)
    summary = CopySummary(job_id=job_id, source_url=source_url, dest_url=dest_url)
    # A re-run trusts the manifest only where the destination still holds what it verified.
    summary.repaired = len(requeue_damaged(job_id, dest_url, db_url=db_url))
    changed = 0
    with pool:
        runner = BatchScheduler(job_id, db_url, pool, progress, should_stop)
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
