"""The live pace of a migration's host copy: `copy_rate` over the time since its plan began.

The API `details`, `sharemig status --watch` and the Prefect artifact all call `pace`, so the
three show the same bytes/s, files/s and ETA.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session

from storage.db import session_scope
from storage.models import CopyJob, Migration
from storage.models.base import utcnow
from storage.progress import Rate, copy_rate


def _started(session: Session, mig: Migration) -> datetime | None:
    job = session.get(CopyJob, mig.copy_job_id) if mig.copy_job_id else None
    if job is None:
        return None
    at = job.created_at
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def pace(session: Session, mig: Migration, *, finished: bool = False) -> Rate:
    """Rates and ETA of `mig`'s copy now; all None until its plan has begun."""
    started = _started(session, mig)
    if started is None:
        return Rate(None, None, 0.0 if finished else None)
    return copy_rate(mig, (utcnow() - started).total_seconds(), finished=finished)


def migration_pace(migration_id: str, *, db_url: str | None = None) -> Rate:
    with session_scope(db_url) as s:
        mig = s.get(Migration, migration_id)
        return Rate(None, None, None) if mig is None else pace(s, mig)
