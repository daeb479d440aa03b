"""Progress of a copy job, derived from the manifest counters (never from files started)."""

from __future__ import annotations

from storage.db import session_scope
from storage.errors import NotFoundError
from storage.models.manifest import CopyJob
from storage.mover.results import Progress
from storage.progress import weighted_percent


def job_progress(job_id: str, *, db_url: str | None = None) -> Progress:
    with session_scope(db_url) as session:
        job = session.get(CopyJob, job_id)
        if job is None:
            raise NotFoundError(f"copy job {job_id} not found")
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
            percent=weighted_percent(
                bytes_done=job.bytes_verified,
                bytes_total=job.bytes_planned,
                entries_done=job.entries_done,
                entries_total=job.entries_planned,
                finished=job.state == "done",
            ),
            current_path=job.current_path,
        )
