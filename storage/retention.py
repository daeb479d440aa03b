"""The rollback window: a switchover's old instance kept (status `retained`) until a deadline.

With `SHAREMIG_RETAIN_SOURCE_S` > 0 the switchover keeps its source instead of deleting it:
unfrozen, not exported (the share's export locations are its active instance's), still
charged to its pool (`storage.pools` counts it). `sharemig rollback` moves the share back onto
it (`storage.rollback`); at the deadline `expire_retained` deletes it, through the pool
driver's O(1) `delete_instance` like a switchover's source.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.db import session_scope
from storage.errors import classified_os_errors
from storage.models import ShareInstance
from storage.models.base import aware, utcnow
from storage.shares import delete_instance, reclaim_space

log = logging.getLogger(__name__)

RETAINED = "retained"


def retain_instance(session: Session, instance: ShareInstance, seconds: float) -> datetime:
    """Keep a retired (already unfrozen) source for `seconds`; returns the deadline."""
    instance.status = RETAINED
    instance.retained_until = utcnow() + timedelta(seconds=seconds)
    session.flush()
    return instance.retained_until


def retained_instance(session: Session, share_id: str) -> ShareInstance | None:
    """The share's retained old instance, expired or not, if it still exists."""
    return session.scalar(
        select(ShareInstance)
        .where(ShareInstance.share_id == share_id, ShareInstance.status == RETAINED)
        .order_by(ShareInstance.created_at.desc())
        .limit(1)
    )


def expire_retained(
    instance_id: str | None = None, *, now: datetime | None = None, db_url: str | None = None
) -> list[str]:
    """Delete retained instances whose deadline passed (only `instance_id`, when given);
    returns the ids deleted. One a rollback made the share's again is no longer retained and
    is left alone, as is one whose deadline is still ahead."""
    moment = now or utcnow()
    with session_scope(db_url) as s:
        query = select(ShareInstance).where(ShareInstance.status == RETAINED)
        if instance_id is not None:
            query = query.where(ShareInstance.id == instance_id)
        due = [
            inst
            for inst in s.scalars(query)
            if inst.retained_until is None or aware(inst.retained_until) <= moment
        ]
        deleted = []
        pools = sorted({inst.pool_name for inst in due})
        for inst in due:
            with classified_os_errors(f"deleting the retained instance on {inst.pool_name}"):
                delete_instance(s, inst, reclaim=False)
            log.info("retained instance %s of share %s expired; deleted", inst.id, inst.share_id)
            deleted.append(inst.id)
        if pools:
            reclaim_space(s, pools)
        return deleted
