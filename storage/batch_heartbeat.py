"""What a copy batch running away from its flow run (on a Dask worker) does for its migration.

It keeps the migration's lease alive while it works, so recovery on any host never calls a
migration with live batches dead, and it reads a recorded cancel itself, so a cancel reaches
it even when the run that submitted it is gone. A batch never revives an expired lease:
once recovery may act, the batch's renewals stop counting.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from sqlalchemy import select, update

from storage.db import session_scope
from storage.models import Migration
from storage.models.base import utcnow

log = logging.getLogger(__name__)

CANCEL_POLL_S = 0.5


def renew_for_job(job_id: str, ttl: timedelta, *, db_url: str | None = None) -> bool:
    """Push on the live lease of the migration that copies with `job_id`; False when there is
    none (no migration: a bare `run_copy`; or its lease already expired)."""
    now = utcnow()
    with session_scope(db_url) as s:
        renewed = s.execute(
            update(Migration)
            .where(
                Migration.copy_job_id == job_id,
                Migration.lease_owner.is_not(None),
                Migration.lease_expires_at >= now,
            )
            .values(lease_expires_at=now + ttl)
            .execution_options(synchronize_session=False)
        )
        return bool(renewed.rowcount)  # type: ignore[attr-defined]


def cancel_recorded(job_id: str, *, db_url: str | None = None) -> bool:
    """True when the migration copying with `job_id` has a cancel request recorded."""
    with session_scope(db_url) as s:
        action = s.scalar(select(Migration.requested_action).where(Migration.copy_job_id == job_id))
    return action == "cancel"


class BatchHeartbeat:
    """Renews the job's migration lease every third of `ttl` in a daemon thread, until `stop`."""

    def __init__(self, job_id: str, ttl: timedelta, db_url: str | None) -> None:
        self.job_id, self.ttl, self._db_url = job_id, ttl, db_url
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"batch-lease-{job_id[:8]}", daemon=True
        )
        self._checked = 0.0
        self._cancelled = False

    def _loop(self) -> None:
        every = max(0.2, self.ttl.total_seconds() / 3)
        while True:
            try:
                renew_for_job(self.job_id, self.ttl, db_url=self._db_url)
            except Exception as exc:  # the database is away for a moment: the next try counts
                log.warning("job %s: batch lease not renewed (%s)", self.job_id, exc)
            if self._stop.wait(every):
                return

    def cancel_requested(self) -> bool:
        """A recorded cancel, read from the database at most every CANCEL_POLL_S."""
        now = time.monotonic()
        if not self._cancelled and now - self._checked >= CANCEL_POLL_S:
            self._checked = now
            self._cancelled = cancel_recorded(self.job_id, db_url=self._db_url)
        return self._cancelled

    def __enter__(self) -> BatchHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
