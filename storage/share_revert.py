"""Manila's revert-to-snapshot: a share goes back to its most recent snapshot, in place.

Only pools whose driver can do it in O(1) offer it (`revert_to_snapshot_support`, btrfs: the
instance becomes a writable snapshot of the snapshot); the share's type must ask for it too,
as in Manila, where the type's extra spec decides and the scheduler places the share on a
backend that reports the capability.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from storage import migration_state
from storage.catalog import get_share_type
from storage.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    classified_os_errors,
)
from storage.models import Share
from storage.pools import driver_for
from storage.shares import active_instance, get_share, get_snapshot, list_snapshots

log = logging.getLogger(__name__)


def revert_to_snapshot(
    session: Session, share_id: str, snapshot_id: str, project_id: str | None = None
) -> Share:
    """Revert the share to `snapshot_id`, which must be its latest snapshot; the checks and
    their order are Manila's, 400 for what the request gets wrong, 409 for the share's state."""
    share = get_share(session, share_id, project_id)
    try:
        snap = get_snapshot(session, snapshot_id, project_id)
    except NotFoundError as exc:
        raise InvalidInputError(str(exc)) from None
    inst = active_instance(session, share)
    driver = driver_for(session, inst.pool_name)
    wanted = get_share_type(session, share.share_type_id).spec_bool("revert_to_snapshot_support")
    if not (wanted and driver.capabilities.revert_to_snapshot_support):
        why = (
            "its share type does not set revert_to_snapshot_support"
            if not wanted
            else f"its pool {inst.pool_name} ({driver.pool.driver}) cannot revert in place"
        )
        raise InvalidInputError(
            f"Share {share_id} may not be reverted to snapshot {snapshot_id}, because the share "
            f"does not have that capability: {why}."
        )
    if snap.share_id != share.id:
        raise InvalidInputError(f"Snapshot {snapshot_id} is not associated with share {share_id}.")
    if share.status != "available":
        raise ConflictError(
            f"Share {share_id} is in '{share.status}' state, but it must be in 'available' "
            "state to be reverted to a snapshot."
        )
    if snap.status != "available":
        raise ConflictError(
            f"Snapshot {snapshot_id} is in '{snap.status}' state, but it must be in "
            "'available' state to be restored."
        )
    if share.task_state in migration_state.BUSY:
        raise ConflictError(f"Share {share_id} may not be reverted while it has an active task.")
    latest = list_snapshots(session, share.id)[-1]
    if latest.id != snap.id:
        raise ConflictError(
            f"Snapshot {snapshot_id} may not be restored because it is not the most recent "
            f"snapshot of share {share_id}. Currently the latest snapshot is {latest.id}."
        )
    # Committed first, so a migration or delete that arrives meanwhile finds the share busy.
    share.status, snap.status = "reverting", "restoring"
    session.commit()
    log.info("reverting share %s to snapshot %s on pool %s", share.id, snap.id, inst.pool_name)
    try:
        with classified_os_errors(f"reverting share {share.id} on pool {inst.pool_name}"):
            driver.revert_to_snapshot(inst.location, snap.id)
    finally:  # as in Manila, a failed revert leaves both available (the driver's is atomic)
        share.status, snap.status = "available", "available"
        session.commit()
    return share
