"""Retention of ended migrations' manifests: kept for reports, deleted once they are old.

A manifest holds one row per source entry, so without a limit the database grows with every
migration ever run. A migration that ended (success, error, cancel) keeps its copy job and
rows for `manifest_retention_s` after `finished_at`; then they go, in chunks (one short
transaction each, so a million-row manifest never holds the database's write lock for long).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from storage.db import session_scope
from storage.models import CopyJob, ManifestEntry, Migration
from storage.models.base import utcnow
from storage.settings import get_settings

PRUNE_CHUNK = 5000


def expired_copy_jobs(session: Session, cutoff: datetime) -> list[str]:
    """Copy jobs of migrations that ended before `cutoff` and still have a manifest."""
    job_id = func.coalesce(Migration.copy_job_id, Migration.id)
    ended = select(job_id).where(
        Migration.active.is_(False),
        Migration.finished_at.is_not(None),
        Migration.finished_at < cutoff,
    )
    return list(session.scalars(select(CopyJob.id).where(CopyJob.id.in_(ended))))


def prune_ended_manifests(*, now: datetime | None = None, db_url: str | None = None) -> int:
    """Delete the manifests whose migration ended more than the retention period ago;
    returns how many manifest rows went."""
    retention = timedelta(seconds=get_settings().manifest_retention_s)
    cutoff = (now or utcnow()) - retention
    with session_scope(db_url) as s:
        jobs = expired_copy_jobs(s, cutoff)
    removed = 0
    for job in jobs:
        while True:
            with session_scope(db_url) as s:
                ids = select(ManifestEntry.id).where(ManifestEntry.job_id == job)
                chunk = list(s.scalars(ids.limit(PRUNE_CHUNK)))
                if not chunk:
                    s.execute(delete(CopyJob).where(CopyJob.id == job))
                    break
                s.execute(delete(ManifestEntry).where(ManifestEntry.id.in_(chunk)))
                removed += len(chunk)
    return removed
