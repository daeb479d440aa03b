"""The live pace of a migration's host copy: `copy_rate` over the time from its plan's start
to the last move of its verified counters, counting the ETA down since.

The API `details`, `sharemig status --watch` and the Prefect artifact all call `pace`, so the
three show the same bytes/s, files/s and ETA.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from storage.db import session_scope
from storage.models import CopyJob, Migration
from storage.models.base import aware, utcnow
from storage.progress import Rate, copy_rate


def _started(session: Session, mig: Migration) -> datetime | None:
    job = session.get(CopyJob, mig.copy_job_id) if mig.copy_job_id else None
    return None if job is None else aware(job.created_at)


def pace(session: Session, mig: Migration, *, finished: bool = False) -> Rate:
    """Rates and ETA of `mig`'s copy now; all None until its plan has begun."""
    started = _started(session, mig)
    if started is None:
        return Rate(None, None, 0.0 if finished else None)
    now = utcnow()
    since = (now - aware(mig.verified_at)).total_seconds() if mig.verified_at else 0.0
    return copy_rate(mig, (now - started).total_seconds(), finished=finished, since_s=since)


def migration_pace(migration_id: str, *, db_url: str | None = None) -> Rate:
    with session_scope(db_url) as s:
        mig = s.get(Migration, migration_id)
        return Rate(None, None, None) if mig is None else pace(s, mig)
