"""Share lifecycle: create on a chosen pool, delete, snapshots, export locations, access rules."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage import migration_state
from storage.catalog import ensure_default_share_type, get_share_network, get_share_type
from storage.errors import (
    CapacityError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
    SharemigError,
    classified_os_errors,
)
from storage.models import AccessRule, ExportLocation, Pool, Share, ShareInstance, Snapshot
from storage.pools import driver_for, free_gb, lock_pool
from storage.scheduler import fit, pick_pool

log = logging.getLogger(__name__)

BUSY_TASK_STATES = migration_state.BUSY
# Statuses an admin may force with `reset_status` (Manila's share statuses).
RESETTABLE_STATUSES = frozenset(
    {"available", "error", "creating", "deleting", "error_deleting", "migrating", "migrating_to"}
)
ACCESS_LEVELS = ("rw", "ro")
ACCESS_TYPES = ("ip", "user", "cert", "cephx")


def instance_location(instance_id: str) -> str:
    """The instance's key inside its pool (a single path component)."""
    return f"share-{instance_id}"


def check_text_fields(**fields: str | None) -> None:
    """Names and descriptions are free text, but never a NUL (no database or tool keeps one)."""
    for field, value in fields.items():
        if value is not None and "\0" in value:
            raise InvalidInputError(f"{field} must not contain a NUL character")


def get_share(session: Session, share_id: str, project_id: str | None = None) -> Share:
    """The share, or `NotFoundError`; with `project_id`, another project's share is not found."""
    share = session.get(Share, share_id)
    if share is None or (project_id is not None and share.project_id != project_id):
        raise NotFoundError(f"Share {share_id} could not be found.")
    return share


def list_shares(session: Session, project_id: str | None) -> list[Share]:
    q = select(Share).order_by(Share.created_at, Share.id)
    if project_id is not None:
        q = q.where(Share.project_id == project_id)
    return list(session.scalars(q))


def instances(session: Session, share_id: str) -> list[ShareInstance]:
    return list(
        session.scalars(
            select(ShareInstance)
            .where(ShareInstance.share_id == share_id)
            .order_by(ShareInstance.created_at)
        )
    )


def active_instance(session: Session, share: Share) -> ShareInstance:
    """The instance that is the share (not a migration destination, not retired)."""
    for inst in instances(session, share.id):
        if inst.status not in ("migrating_to", "inactive", "deleting", "retained"):
            return inst
    raise NotFoundError(f"share {share.id} has no active instance")


def create_instance(
    session: Session,
    share: Share,
    pool_name: str,
    *,
    status: str,
    share_type_id: str,
    share_network_id: str | None,
) -> ShareInstance:
    """A new instance row plus its data root and export locations on the pool."""
    inst = ShareInstance(
        share_id=share.id,
        pool_name=pool_name,
        status=status,
        share_type_id=share_type_id,
        share_network_id=share_network_id,
        location="",
    )
    session.add(inst)
    session.flush()
    inst.location = instance_location(inst.id)
    driver = driver_for(session, pool_name)
    # A raw OSError would reach the API as a 500; name the pool so an operator can act.
    with classified_os_errors(f"creating share storage on pool {pool_name}"):
        driver.create_instance(inst.location, size_gib=share.size)
    for i, path in enumerate(driver.export_locations(inst.location)):
        session.add(ExportLocation(share_instance_id=inst.id, path=path, preferred=i == 0))
    session.flush()
    return inst


def delete_instance(session: Session, instance: ShareInstance, *, reclaim: bool = True) -> None:
    """Remove the instance's data (idempotent on the pool) and its rows.

    `reclaim=False` leaves the data moved aside for `reclaim_space` (a switchover deletes
    its source that way, so `migration_success` does not wait on the file count)."""
    driver = driver_for(session, instance.pool_name)
    with classified_os_errors(f"deleting share storage on pool {instance.pool_name}"):
        driver.delete_instance(instance.location)
        if reclaim:
            driver.reclaim_space()
    session.delete(instance)
    session.flush()


def reclaim_space(session: Session, pool_names: list[str] | None = None) -> int:
    """Free what deleted instances left on these pools (every pool when None).

    Best effort: a pool that fails is logged and tried again by the next call (the next
    migration's end, or `up`'s recovery pass)."""
    names = pool_names or list(session.scalars(select(Pool.name)))
    freed = 0
    for name in names:
        try:
            with classified_os_errors(f"reclaiming deleted instances on pool {name}"):
                freed += driver_for(session, name).reclaim_space()
        except SharemigError as exc:
            log.warning("pool %s: deleted instances not reclaimed yet: %s", name, exc)
    return freed


def create_share(
    session: Session,
    *,
    project_id: str,
    size: int,
    share_proto: str = "NFS",
    name: str | None = None,
    description: str | None = None,
    share_type_id: str | None = None,
    share_network_id: str | None = None,
    availability_zone: str | None = None,
    metadata: dict[str, object] | None = None,
    is_public: bool = False,
    user_id: str | None = None,
    host: str | None = None,
) -> Share:
    """Create a share on the best-fitting pool (or on `host`, if it fits)."""
    check_text_fields(name=name, description=description)
    if size < 1:
        raise InvalidInputError(f"share size must be a positive number of GiB, got {size}")
    share_type = (
        get_share_type(session, share_type_id)
        if share_type_id
        else ensure_default_share_type(session)
    )
    if share_network_id:
        get_share_network(session, share_network_id, project_id)
    if not host:
        host = pick_pool(session, share_type, size, az=availability_zone).name
    # Checked again under the pool's lock: a concurrent create must not take the same space.
    pool = lock_pool(session, host)
    verdict = fit(pool, share_type, size, free_gb(session, pool), availability_zone)
    if verdict.reason:
        raise CapacityError(f"pool {host} cannot hold this share: {verdict.reason}")
    share = Share(
        project_id=project_id,
        user_id=user_id,
        name=name,
        description=description,
        size=size,
        share_proto=share_proto.upper(),
        status="creating",
        share_type_id=share_type.id,
        share_network_id=share_network_id,
        availability_zone=pool.availability_zone,
        metadata_=dict(metadata or {}),
        is_public=is_public,
        host=pool.name,
    )
    session.add(share)
    session.flush()
    create_instance(
        session,
        share,
        pool.name,
        status="available",
        share_type_id=share_type.id,
        share_network_id=share_network_id,
    )
    share.status = "available"
    session.flush()
    return share


def reset_status(session: Session, share_id: str, status: str) -> None:
    """Admin repair: force the share's visible status (its instances are left as they are)."""
    if status not in RESETTABLE_STATUSES:
        allowed = ", ".join(sorted(RESETTABLE_STATUSES))
        raise InvalidInputError(f"Invalid status {status!r}; use one of: {allowed}.")
    get_share(session, share_id).status = status
    session.flush()


def delete_share(session: Session, share_id: str, project_id: str | None = None) -> None:
    share = get_share(session, share_id, project_id)
    if share.status not in ("available", "error") or share.task_state in BUSY_TASK_STATES:
        raise InvalidStateError(
            f"share {share_id} is {share.status} ({share.task_state}); "
            "cancel or complete its migration before deleting it"
        )
    snaps = list_snapshots(session, share_id)
    if snaps:
        raise InvalidStateError(
            f"share {share_id} still has {len(snaps)} snapshot(s); delete them first"
        )
    for inst in instances(session, share_id):
        delete_instance(session, inst)
    session.delete(share)
    session.flush()


def export_locations(session: Session, share_id: str) -> list[ExportLocation]:
    """The share's export locations; a migration destination's stay hidden until switchover."""
    share = session.get(Share, share_id)
    if share is None:
        raise NotFoundError(f"Share {share_id} could not be found.")
    inst = active_instance(session, share)
    return list(
        session.scalars(
            select(ExportLocation)
            .where(ExportLocation.share_instance_id == inst.id)
            .order_by(ExportLocation.preferred.desc(), ExportLocation.created_at)
        )
    )


def create_snapshot(
    session: Session,
    share_id: str,
    *,
    name: str | None = None,
    description: str | None = None,
    project_id: str | None = None,
) -> Snapshot:
    check_text_fields(name=name, description=description)
    share = get_share(session, share_id, project_id)
    if share.status != "available":
        raise InvalidStateError(f"share {share_id} is {share.status}; snapshots need 'available'")
    inst = active_instance(session, share)
    snap = Snapshot(
        share_id=share.id,
        project_id=share.project_id,
        name=name,
        description=description,
        size=share.size,
        status="creating",
    )
    session.add(snap)
    session.flush()
    with classified_os_errors(f"creating a snapshot on pool {inst.pool_name}"):
        driver_for(session, inst.pool_name).create_snapshot(inst.location, snap.id)
    snap.status = "available"
    session.flush()
    return snap


def get_snapshot(session: Session, snapshot_id: str, project_id: str | None = None) -> Snapshot:
    snap = session.get(Snapshot, snapshot_id)
    if snap is None or (project_id is not None and snap.project_id != project_id):
        raise NotFoundError(f"Snapshot {snapshot_id} could not be found.")
    return snap


def list_snapshots(session: Session, share_id: str | None = None) -> list[Snapshot]:
    q = select(Snapshot).order_by(Snapshot.created_at, Snapshot.id)
    if share_id is not None:
        q = q.where(Snapshot.share_id == share_id)
    return list(session.scalars(q))


def delete_snapshot(session: Session, snapshot_id: str, project_id: str | None = None) -> None:
    snap = get_snapshot(session, snapshot_id, project_id)
    share = get_share(session, snap.share_id)
    if share.task_state in BUSY_TASK_STATES:
        raise InvalidStateError(f"share {share.id} is migrating; its snapshots cannot change now")
    inst = active_instance(session, share)
    with classified_os_errors(f"deleting a snapshot on pool {inst.pool_name}"):
        driver_for(session, inst.pool_name).delete_snapshot(inst.location, snap.id)
    session.delete(snap)
    session.flush()


def allow_access(
    session: Session,
    share_id: str,
    access_type: str,
    access_to: str,
    access_level: str = "rw",
    project_id: str | None = None,
) -> AccessRule:
    get_share(session, share_id, project_id)
    if access_level not in ACCESS_LEVELS:
        raise InvalidInputError(
            f"access_level must be one of {ACCESS_LEVELS}, got {access_level!r}"
        )
    if access_type not in ACCESS_TYPES:
        raise InvalidInputError(f"access_type must be one of {ACCESS_TYPES}, got {access_type!r}")
    if not access_to:
        raise InvalidInputError("access_to must not be empty")
    rule = AccessRule(
        share_id=share_id, access_type=access_type, access_to=access_to, access_level=access_level
    )
    session.add(rule)
    session.flush()
    return rule


def deny_access(
    session: Session, share_id: str, rule_id: str, project_id: str | None = None
) -> None:
    get_share(session, share_id, project_id)
    rule = session.get(AccessRule, rule_id)
    if rule is None or rule.share_id != share_id:
        raise NotFoundError(f"access rule {rule_id} could not be found")
    session.delete(rule)
    session.flush()


def list_access(session: Session, share_id: str) -> list[AccessRule]:
    return list(
        session.scalars(
            select(AccessRule)
            .where(AccessRule.share_id == share_id)
            .order_by(AccessRule.created_at)
        )
    )
