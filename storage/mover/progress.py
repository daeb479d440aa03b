"""Progress of a copy job, derived from the manifest counters (never from files started)."""

from __future__ import annotations

from storage.db import session_scope
from storage.errors import NotFoundError
from storage.models.manifest import CopyJob
from storage.mover.results import Progress

ENTRY_WEIGHT = 4096
"""Each entry counts as this many bytes of work, so a tree of empty files still advances."""


def percent_of(done: int, total: int, finished: bool) -> int:
    """0-100; 100 only when the job is finished, so the last step is never skipped."""
    if finished:
        return 100
    if total <= 0:
        return 0
    return max(0, min(99, done * 100 // total))


def job_progress(job_id: str, *, db_url: str | None = None) -> Progress:
    with session_scope(db_url) as session:
        job = session.get(CopyJob, job_id)
        if job is None:
            raise NotFoundError(f"copy job {job_id} not found")
        done = job.bytes_verified + job.entries_done * ENTRY_WEIGHT
        total = job.bytes_planned + job.entries_planned * ENTRY_WEIGHT
        return Progress(
            job_id=job.id,
            state=job.state,
            files_planned=job.files_planned,
            bytes_planned=job.bytes_planned,
            files_verified=job.files_verified,
            bytes_verified=job.bytes_verified,
            entries_planned=job.entries_planned,
            entries_done=job.entries_done,
            skipped=job.files_skipped,
            failed=job.files_failed,
            percent=percent_of(done, total, job.state == "done"),
            current_path=job.current_path,
        )
