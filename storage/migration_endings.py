"""How a migration ends: the switch to the destination, back to waiting, success, abort.

Each function is idempotent and keyed by the database like `storage.migration_lifecycle`:
the switch is one transaction, and once the destination is the share's the only way is
forward (abort and back-to-waiting refuse from there).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.orm import Session

from storage import migration_state as state
from storage.db import session_scope
from storage.errors import InvalidStateError, PermanentError, classified_os_errors
from storage.migration_freeze import lift_instance
from storage.migration_lifecycle import load_migration, migration_ref
from storage.migration_state import TaskState
from storage.models import Migration, Share, ShareInstance
from storage.models.base import utcnow
from storage.pools import driver_for, get_pool
from storage.retention import RETAINED, retain_instance
from storage.shares import delete_instance, get_share, reclaim_space

log = logging.getLogger(__name__)


def _switched(share: Share, dest: ShareInstance | None) -> bool:
    return dest is not None and dest.status == "available" and share.host == dest.pool_name


def switch_to_destination(migration_id: str, *, db_url: str | None = None) -> None:
    """In ONE transaction: the destination instance becomes the share's, the source retires.

    Access rules belong to the share, so they follow; export locations are the destination
    instance's from now on (the API shows the active instance's).
    """
    with session_scope(db_url) as s:
        mig = load_migration(s, migration_id)
        share = get_share(s, mig.share_id)
        dest = s.get(ShareInstance, mig.dest_instance_id) if mig.dest_instance_id else None
        if mig.outcome is not None or _switched(share, dest):
            return
        if dest is None:
            raise PermanentError(f"migration {mig.id} has no destination instance to switch to")
        source = s.get(ShareInstance, mig.source_instance_id)
        if source is not None:
            source.status = "inactive"  # still frozen: `delete_source` lifts it, then deletes
        pool = get_pool(s, dest.pool_name)
        dest.status = "available"
        dest.retained_until = None  # a rollback's destination was a retained instance
        share.host = pool.name
        share.availability_zone = pool.availability_zone
        share.share_type_id = dest.share_type_id
        share.share_network_id = dest.share_network_id
        s.flush()


def return_to_waiting(migration_id: str, reason: str, *, db_url: str | None = None) -> bool:
    """A switchover that kept failing: back to phase 1 done, waiting for a new approval.

    Only before the destination became the share's (from there the only way is forward).
    The approval is cleared so the operator can approve again or cancel; the reason is kept
    on the migration (the API's `details`, 2.59+). False when there is nothing to undo.
    """
    with session_scope(db_url) as s:
        mig = load_migration(s, migration_id)
        share = get_share(s, mig.share_id)
        dest = s.get(ShareInstance, mig.dest_instance_id) if mig.dest_instance_id else None
        if mig.outcome is not None or _switched(share, dest):
            return False
        waiting = (
            TaskState.DRIVER_PHASE1_DONE if mig.mechanism == "driver" else TaskState.COPY_COMPLETED
        )
        state.move(share, waiting)
        source = s.get(ShareInstance, mig.source_instance_id)
        if mig.mechanism == "driver" and source is not None:
            # The driver froze its writable source for the final sync; it is served
            # read-write again while it waits. A host-assisted source stays frozen.
            with classified_os_errors("lifting the driver's freeze of the source"):
                driver_for(s, source.pool_name).lift_freeze(source.location)
        mig.requested_action = None
        mig.approval_reason = None
        mig.error = f"switchover failed, waiting for approval again: {reason}"[:4000]
        s.flush()
        return True


def delete_source(migration_id: str, *, db_url: str | None = None) -> datetime | None:
    """Remove the retired source instance (data and rows); nothing left is fine.

    With a rollback window (`SHAREMIG_RETAIN_SOURCE_S`, recorded at the start) it is kept
    instead, unfrozen, and the deadline is returned; a rollback's own source (the instance it
    moved away from) is always deleted."""
    with session_scope(db_url) as s:
        mig = load_migration(s, migration_id)
        source = s.get(ShareInstance, mig.source_instance_id)
        if source is None:
            return None
        if source.status == RETAINED:
            return source.retained_until
        if source.status != "inactive":
            raise InvalidStateError(
                f"source instance {source.id} is {source.status}; only a retired one is deleted"
            )
        lift_instance(s, source)
        if mig.retain_source_s > 0 and mig.rollback_of is None:
            return retain_instance(s, source, mig.retain_source_s)
        with classified_os_errors(f"deleting the source instance on {source.pool_name}"):
            delete_instance(s, source, reclaim=False)
        return None


def reclaim_deleted(*, db_url: str | None = None) -> int:
    """Free the space of deleted instances on every pool (a switchover's source, moved aside
    by `delete_source`). Best effort: what fails now is freed by the next call, at the next
    migration's end or in `up`'s recovery pass."""
    with session_scope(db_url) as s:
        return reclaim_space(s)


def _finish(session: Session, mig: Migration, outcome: TaskState, reason: str | None) -> None:
    share = get_share(session, mig.share_id)
    if _admin_took_over(share):
        log.warning(
            "migration %s ends as %s; share %s keeps the task_state %s an admin set",
            mig.id,
            outcome.value,
            share.id,
            share.task_state,
        )
    else:
        state.move(share, outcome)
    share.status = "available"
    mig.outcome = outcome
    mig.active = False
    mig.finished_at = utcnow()
    mig.current_path = None
    if reason:
        mig.error = reason[:4000]
    if outcome == TaskState.SUCCESS:
        mig.progress = 100
    session.flush()


def _admin_took_over(share: Share) -> bool:
    """An admin's `reset_task_state` moved the share out of the migration's states."""
    return share.task_state is None or share.task_state in state.TERMINAL


def finish_success(migration_id: str, *, db_url: str | None = None) -> None:
    with session_scope(db_url) as s:
        mig = load_migration(s, migration_id)
        if mig.outcome is None:
            _finish(s, mig, TaskState.SUCCESS, None)


# --- cancel / error ----------------------------------------------------------------------


def abort(migration_id: str, outcome: str, reason: str, *, db_url: str | None = None) -> str:
    """End the migration as `migration_cancelled` or `migration_error`, source intact.

    Idempotent, and safe to re-run after a partial run: the driver's cancel, removal of the
    destination instance and restoring the source each check what is left to do. Returns the
    outcome the migration ended with (an earlier outcome wins). Refused once the switchover
    made the destination the share's: from there the only way is forward.
    """
    if outcome not in (TaskState.CANCELLED, TaskState.ERROR):
        raise ValueError(f"abort ends in migration_cancelled or migration_error, not {outcome}")
    final = TaskState(outcome)
    with session_scope(db_url) as s:
        mig = load_migration(s, migration_id)
        if mig.outcome is not None:
            return mig.outcome
        share = get_share(s, mig.share_id)
        dest = s.get(ShareInstance, mig.dest_instance_id) if mig.dest_instance_id else None
        if _switched(share, dest):
            raise InvalidStateError(
                f"migration {mig.id} already switched share {share.id} to {mig.dest_host}; "
                "it can only be finished, not undone"
            )
        if share.task_state == TaskState.COPY_IN_PROGRESS:
            state.move(
                share,
                TaskState.COPY_CANCELLED if final == TaskState.CANCELLED else TaskState.COPY_ERROR,
            )
        elif not _admin_took_over(share):
            state.check(share.task_state, final)
        driver_ref = migration_ref(s, mig, db_url) if mig.mechanism == "driver" and dest else None
    if driver_ref is not None:
        driver, ref = driver_ref
        with classified_os_errors("cancelling the driver-assisted migration"):
            driver.migration_cancel(ref)
    with session_scope(db_url) as s:
        mig = load_migration(s, migration_id)
        dest = s.get(ShareInstance, mig.dest_instance_id) if mig.dest_instance_id else None
        if dest is not None and mig.rollback_of is not None:
            dest.status = RETAINED  # a rollback's destination is the retained instance: kept
        elif dest is not None:
            delete_instance(s, dest)
        source = s.get(ShareInstance, mig.source_instance_id)
        if source is not None:
            lift_instance(s, source)
            source.status = "available"
        if mig.outcome is None:
            _finish(s, mig, final, reason)
        return mig.outcome or outcome
