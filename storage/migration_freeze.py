"""Freezing a migration's source instance, recorded in the database and lifted exactly once.

A host-assisted source is frozen from the start of the copy to the end of the migration
(Manila casts its access rules to read-only). `ShareInstance.frozen_at_ns` is the record:
set when the pool's driver froze the instance, cleared when the freeze is lifted, so cancel,
reject, `migration_error`, the switch and crash recovery each find out whether there is a
freeze left to lift.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.db import session_scope
from storage.errors import FreezeUnavailableError, classified_os_errors
from storage.models import Migration, ShareInstance
from storage.pools import driver_for

log = logging.getLogger(__name__)


def freeze_instance(session: Session, instance: ShareInstance) -> bool:
    """Freeze `instance` through its pool's driver; False when the pool cannot enforce it.

    Idempotent: a recorded freeze is re-applied (a reboot drops bind mounts) and its time kept.
    """
    driver = driver_for(session, instance.pool_name)
    instance.access_read_only = True
    if not driver.capabilities.freeze_support:
        return False
    try:
        with classified_os_errors(f"freezing share instance {instance.id} on {instance.pool_name}"):
            driver.freeze_instance(instance.location)
    except FreezeUnavailableError as exc:
        log.warning("share instance %s stays writable: %s", instance.id, exc)
        return False
    instance.frozen_at_ns = instance.frozen_at_ns or time.time_ns()
    session.flush()
    return True


def lift_instance(session: Session, instance: ShareInstance) -> bool:
    """Lift the freeze of `instance` if one is recorded; True when it lifted one."""
    instance.access_read_only = False
    if instance.frozen_at_ns is None:
        return False
    with classified_os_errors(f"lifting the freeze of share instance {instance.id}"):
        driver_for(session, instance.pool_name).lift_freeze(instance.location)
    instance.frozen_at_ns = None
    session.flush()
    log.info("share instance %s on %s is writable again", instance.id, instance.pool_name)
    return True


def late_write_check(session: Session, instance: ShareInstance) -> Callable[[], list[bytes]]:
    """A check, callable without the session (so it can run beside other work), for entries
    of a frozen instance changed since its freeze (a descriptor opened before it)."""
    since = instance.frozen_at_ns
    if since is None:
        return list
    driver = driver_for(session, instance.pool_name)
    location, what = instance.location, f"checking share instance {instance.id} for late writes"

    def check() -> list[bytes]:
        with classified_os_errors(what):
            return driver.late_writes(location, since)

    return check


def lift_stale_freezes(*, db_url: str | None = None) -> list[str]:
    """Recovery: lift freezes whose migration has ended (a run killed between its end and the
    lift). Returns the instance ids made writable again."""
    lifted = []
    with session_scope(db_url) as s:
        live = select(Migration.source_instance_id).where(
            Migration.active.is_(True), Migration.outcome.is_(None)
        )
        stale = s.scalars(
            select(ShareInstance).where(
                ShareInstance.frozen_at_ns.is_not(None), ShareInstance.id.not_in(live)
            )
        ).all()
        for instance in stale:
            if lift_instance(s, instance):
                lifted.append(instance.id)
    return lifted
