"""Share lifecycle: create on a chosen pool, delete, snapshots, export locations, access rules."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage import migration_state
from storage.catalog import ensure_default_share_type, get_share_network, get_share_type
from storage.drivers.registry import driver_class
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
    {
        "available",
        "error",
        "creating",
        "deleting",
        "error_deleting",
        "migrating",
        "migrating_to",
        "extending",
        "extending_error",
        "shrinking",
        "shrinking_error",
        "shrinking_possible_data_loss_error",
    }
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
    from_snapshot: tuple[str, str] | None = None,
) -> ShareInstance:
    """A new instance row plus its data root and export locations on the pool.

    `from_snapshot` (source instance location, snapshot id on the same pool) fills the data
    root with that snapshot's data instead of leaving it empty."""
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
        if from_snapshot is None:
            driver.create_instance(inst.location, size_gib=share.size)
        else:
            driver.create_instance_from_snapshot(*from_snapshot, inst.location, share.size)
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
    snapshot_id: str | None = None,
) -> Share:
    """Create a share on the best-fitting pool (or on `host`, if it fits).

    With `snapshot_id` the share starts as a copy of that snapshot, on its parent share's pool
    (Manila's default placement), of the parent's type unless another is named."""
    check_text_fields(name=name, description=description)
    if size < 1:
        raise InvalidInputError(f"share size must be a positive number of GiB, got {size}")
    source: tuple[ShareInstance, Snapshot] | None = None
    if snapshot_id:
        source = _snapshot_source(session, snapshot_id, project_id, size)
        host = source[0].pool_name
        share_type_id = share_type_id or source[0].share_type_id
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
        snapshot_id=snapshot_id or None,
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
        from_snapshot=(source[0].location, source[1].id) if source else None,
    )
    share.status = "available"
    session.flush()
    return share


def _snapshot_source(
    session: Session, snapshot_id: str, project_id: str, size: int
) -> tuple[ShareInstance, Snapshot]:
    """The parent's active instance and the snapshot a new share is created from."""
    snap = get_snapshot(session, snapshot_id, project_id)
    if snap.status != "available":
        raise InvalidStateError(
            f"Snapshot {snap.id} status must be 'available', but it is {snap.status!r}."
        )
    if size < snap.size:
        raise InvalidInputError(
            f"Share size '{size}' must be equal or greater than snapshot size ({snap.size} GiB)."
        )
    parent = active_instance(session, get_share(session, snap.share_id))
    pool = session.get(Pool, parent.pool_name)
    assert pool is not None  # a foreign key
    if not driver_class(pool.driver).capabilities.create_share_from_snapshot_support:
        raise InvalidInputError(
            f"A new share may not be created from snapshot '{snap.id}': its pool {pool.name} "
            f"({pool.driver} driver) has no create_share_from_snapshot_support."
        )
    return parent, snap


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
    metadata: dict[str, str] | None = None,
) -> Snapshot:
    check_text_fields(name=name, description=description)
    share = get_share(session, share_id, project_id)
    if share.task_state in BUSY_TASK_STATES:
        raise InvalidStateError(
            f"Share {share_id} is busy with an active task: {share.task_state}; "
            "snapshots wait until its migration ends."
        )
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
        metadata_=dict(metadata or {}),
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


def _check_rules_can_change(session: Session, share: Share, verb: str) -> None:
    """Manila refuses rule changes while the share or one of its copies is not `available`
    (a migration's destination, a reset status) or a migration task is busy."""
    if (
        share.status != "available"
        or share.task_state in BUSY_TASK_STATES
        or any(i.status != "available" for i in instances(session, share.id))
    ):
        raise InvalidStateError(
            f"Access rules cannot be {verb} while the share or any of its migration copies is "
            f"in an invalid state: share {share.id} is {share.status}"
            + (f" ({share.task_state})" if share.task_state else "")
            + ". Complete or cancel the migration, or repair the share with reset_status."
        )


def allow_access(
    session: Session,
    share_id: str,
    access_type: str,
    access_to: str,
    access_level: str = "rw",
    project_id: str | None = None,
) -> AccessRule:
    share = get_share(session, share_id, project_id)
    if access_level not in ACCESS_LEVELS:
        raise InvalidInputError(
            f"access_level must be one of {ACCESS_LEVELS}, got {access_level!r}"
        )
    if access_type not in ACCESS_TYPES:
        raise InvalidInputError(f"access_type must be one of {ACCESS_TYPES}, got {access_type!r}")
    if not access_to:
        raise InvalidInputError("access_to must not be empty")
    for existing in list_access(session, share_id):
        if (existing.access_type, existing.access_to) == (access_type, access_to):
            raise InvalidInputError(
                f"Share access {access_type}:{access_to} exists already (rule {existing.id})."
            )
    _check_rules_can_change(session, share, "applied")
    rule = AccessRule(
        share_id=share_id, access_type=access_type, access_to=access_to, access_level=access_level
    )
    session.add(rule)
    session.flush()
    return rule


def deny_access(
    session: Session, share_id: str, rule_id: str, project_id: str | None = None
) -> None:
    share = get_share(session, share_id, project_id)
    rule = session.get(AccessRule, rule_id)
    if rule is None or rule.share_id != share_id:
        raise NotFoundError(f"access rule {rule_id} could not be found")
    _check_rules_can_change(session, share, "denied")
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
