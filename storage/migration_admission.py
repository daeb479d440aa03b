"""The synchronous part of each migration action: contract checks and compare-and-set moves.

Both front doors (API shim, CLI) reach these through `flows.control`. Every state change is a
conditional UPDATE, so two racing requests are decided by the database, never by a read
followed by a write: the loser gets `InvalidStateError` (400) instead of a second 202.
Functions take a `Session`, flush, and leave the commit to the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storage import migration_state as state
from storage.catalog import get_share_type
from storage.copy_pace import pace
from storage.errors import (
    ConflictError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
)
from storage.migration_state import TaskState
from storage.models import (
    AccessRule,
    Migration,
    Pool,
    Share,
    ShareInstance,
    ShareNetwork,
    ShareType,
)
from storage.models.base import utcnow
from storage.pools import free_gb, lock_pool
from storage.progress import copy_percent
from storage.scheduler import capability_problem, fit
from storage.settings import get_settings
from storage.shares import BUSY_TASK_STATES, active_instance, get_share, list_snapshots

# The state machine's sets under the names the API and the flows' control module use.
PHASE1_DONE_STATES = state.PHASE1_DONE
STARTING_STATES = state.STARTING
COPYING_STATES = state.COPYING
# The reference refuses cancel while starting or unmounting (contract §14.1); every phase-1
# state is cancellable here. Only the switchover itself cannot be cancelled.
CANCELLABLE_STATES = state.CANCELLABLE
TERMINAL_STATES = state.TERMINAL
# The outcome of a start undone because its flow run could not be created (not a task_state:
# the share never saw the migration begin).
WITHDRAWN = "withdrawn"


class StartRequest(BaseModel):
    """A parsed `migration_start` body; the five flags are already booleans."""

    host: str
    preserve_metadata: bool
    preserve_snapshots: bool
    writable: bool
    nondisruptive: bool
    force_host_assisted_migration: bool = False
    new_share_network_id: str | None = None
    new_share_type_id: str | None = None


@dataclass(frozen=True)
class ProgressView:
    """What `migration_get_progress` reports; the API drops `details` below 2.59."""

    total_progress: int
    task_state: str | None
    details: dict[str, object] = field(default_factory=dict)


def _state_message(share_id: str, task_state: str | None, otherwise: str) -> str:
    """The contract §6 message for a refused complete/cancel/progress, made actionable."""
    if task_state == "migration_success":
        return f"Migration of share {share_id} has already completed."
    if task_state is None or task_state == "migration_error":
        return (
            f"There is no migration being performed for share {share_id} at this moment; "
            "start one with migration_start."
        )
    if task_state == "migration_cancelled":
        return f"Migration of share {share_id} was already cancelled."
    return otherwise


def active_migration(session: Session, share_id: str) -> Migration | None:
    """The share's current migration row (the newest one still marked active), if any."""
    return session.scalar(
        select(Migration)
        .where(Migration.share_id == share_id, Migration.active.is_(True))
        .order_by(Migration.created_at.desc())
        .limit(1)
    )


def _service_pools(session: Session, host: str) -> list[Pool]:
    """Enabled pools of the `host@backend` service named in a destination host string."""
    service = host.split("#", 1)[0]
    name, sep, backend = service.partition("@")
    if not sep or not name or not backend:
        return []
    return list(
        session.scalars(
            select(Pool).where(Pool.host == name, Pool.backend == backend, Pool.enabled.is_(True))
        )
    )


def _destination_pool(session: Session, host: str, share_id: str) -> Pool:
    """Steps 15-16 plus a stricter pool check (contract §5.2 allows 400 for unknown pools)."""
    pools = _service_pools(session, host)
    service = host.split("#", 1)[0]
    if not pools:
        raise NotFoundError(
            f"ServiceNotFound: Service {service} could not be found. "
            "List destination pools with `manila pool-list` (host@backend#pool)."
        )
    names = ", ".join(sorted(p.name for p in pools))
    if "#" not in host:
        raise InvalidInputError(
            f"Destination host {host!r} names no pool; migrate share {share_id} to one of: {names}."
        )
    for pool in pools:
        if pool.name == host:
            return pool
    raise InvalidInputError(
        f"Pool {host!r} does not exist on service {service}; choose one of: {names}."
    )


def _check_new_type(share: Share, new_type: ShareType, network: str | None) -> None:
    """Steps 17-18: size limits and share-server needs of the requested share type."""
    for key, sign in (("provisioning:min_share_size", 1), ("provisioning:max_share_size", -1)):
        raw = new_type.extra_specs.get(key)
        try:
            limit = int(str(raw))
        except ValueError:
            continue
        if raw is not None and sign * (share.size - limit) < 0:
            raise InvalidInputError(
                f"Share {share.id} is {share.size} GiB; share type {new_type.name} requires "
                f"{key.split(':')[1]} {limit} GiB. Pick another type or resize the share."
            )
    if new_type.spec_bool("driver_handles_share_servers") and network is None:
        raise InvalidInputError(
            f"Share type {new_type.name} has driver_handles_share_servers=True, which needs a "
            "share network; pass new_share_network_id."
        )


def _check_request_and_share(session: Session, share: Share, req: StartRequest) -> ShareType | None:
    """Steps 5-14 (4 and 9-10 cannot fail: no recycle bin, replicas or groups here).

    Returns the requested new share type, if any.
    """
    if req.new_share_network_id and session.get(ShareNetwork, req.new_share_network_id) is None:
        raise InvalidInputError(
            f"Share network {req.new_share_network_id} not found; "
            "list networks with `manila share-network-list`."
        )
    new_type: ShareType | None = None
    if req.new_share_type_id:
        try:
            new_type = get_share_type(session, req.new_share_type_id)
        except NotFoundError:
            raise InvalidInputError(
                f"Share type {req.new_share_type_id} not found; list types with `manila type-list`."
            ) from None
    if req.force_host_assisted_migration and (
        req.preserve_metadata or req.writable or req.nondisruptive or req.preserve_snapshots
    ):
        raise InvalidInputError(
            "Invalid input received: Invalid parameter combination: "
            "force_host_assisted_migration=True copies data through the host, which keeps "
            "neither metadata guarantees, snapshots, writability nor nondisruptiveness; set "
            "preserve_metadata, preserve_snapshots, writable and nondisruptive to False, "
            "or drop force_host_assisted_migration."
        )
    if share.status != "available":
        raise InvalidStateError(
            f"Share {share.id} status must be available, but current status is: {share.status}."
        )
    if session.scalar(
        select(AccessRule.id).where(AccessRule.share_id == share.id, AccessRule.state == "error")
    ):
        raise InvalidStateError(
            f"Share {share.id} has access rules in error state; fix or deny them before migrating."
        )
    if share.task_state in BUSY_TASK_STATES:
        raise InvalidStateError(
            f"Share is busy with an active task: {share.task_state}. Wait for it to finish, "
            "cancel the migration, or repair the share with reset_task_state."
        )
    if req.force_host_assisted_migration and list_snapshots(session, share.id):
        raise ConflictError(
            f"Share {share.id} has snapshots; a forced host-assisted migration cannot carry "
            "them. Delete the snapshots or migrate without force_host_assisted_migration."
        )
    return new_type


def _effective_type_and_network(
    session: Session, share: Share, req: StartRequest, new_type: ShareType | None
) -> tuple[ShareType, str | None]:
    """Steps 17-21 (no quotas or QoS types here: 19-20 cannot fail); contract §5.3."""
    effective_type = new_type or get_share_type(session, share.share_type_id)
    effective_network = req.new_share_network_id or share.share_network_id
    if new_type is not None:
        _check_new_type(share, new_type, effective_network)
    if not effective_type.spec_bool("driver_handles_share_servers"):
        if req.new_share_network_id:
            raise InvalidInputError(
                "New share network must not be provided when the share type "
                f"{effective_type.name} has driver_handles_share_servers=False; "
                "drop new_share_network_id."
            )
        effective_network = None
    return effective_type, effective_network


@dataclass(frozen=True)
class StartCheck:
    """A start that passed every admission check; `noop` when the share is already there."""

    share: Share
    pool: Pool
    share_type: ShareType
    network: str | None
    noop: bool


def check_start(
    session: Session, share_id: str, req: StartRequest, *, project_id: str | None
) -> StartCheck:
    """Contract §5.2 steps 3-23 without acting on them (`admit_start`, and plans, which then
    roll back: the capacity check takes the pool's lock with a write)."""
    share = get_share(session, share_id, project_id)
    new_type = _check_request_and_share(session, share, req)
    pool = _destination_pool(session, req.host, share.id)
    effective_type, effective_network = _effective_type_and_network(session, share, req, new_type)
    noop = (
        req.host == share.host
        and effective_network == share.share_network_id
        and effective_type.id == share.share_type_id
    )
    if not noop:
        _check_destination_fits(session, share, pool, effective_type)
    return StartCheck(share, pool, effective_type, effective_network, noop)


def admit_start(
    session: Session, share_id: str, req: StartRequest, *, project_id: str | None
) -> Migration | None:
    """Contract §5.2 steps 3-23. None means "nothing to do" (share already there: 200).

    Otherwise the new active `Migration` row; the share moved to `migrating` /
    `migration_starting` in the same transaction.
    """
    check = check_start(session, share_id, req, project_id=project_id)
    if check.noop:
        state.move(check.share, TaskState.SUCCESS)
        session.flush()
        return None
    return begin_migration(session, check.share, req, check.share_type, check.network)


def _check_destination_fits(
    session: Session, share: Share, pool: Pool, share_type: ShareType
) -> None:
    """Step 23 and the scheduler's capacity filter, decided now instead of after the 202.

    A pool whose capabilities do not match the type (share servers, snapshots, backend name)
    is what Manila's scheduler refuses after the 202, and tempest expects that: such a start
    is admitted, and its run ends in `migration_error` with the reason (`reserve_destination`).
    """
    zones = share_type.extra_specs.get("availability_zones")
    if zones and pool.availability_zone not in {z.strip() for z in str(zones).split(",")}:
        raise InvalidInputError(
            f"Share type {share_type.name} is limited to availability zones {zones}; "
            f"pool {pool.name} is in {pool.availability_zone}."
        )
    # The pool's lock first: two starts that together overcommit it are serialised here, and
    # the loser sees the winner's reservation (its active migration row) in `free_gb`.
    lock_pool(session, pool.name)
    if capability_problem(pool, share_type):
        return
    free = free_gb(session, pool) + (share.size if pool.name == share.host else 0)
    verdict = fit(pool, share_type, share.size, free, None)
    if verdict.reason:
        raise InvalidInputError(
            f"Pool {pool.name} cannot take share {share.id} ({share.size} GiB, type "
            f"{share_type.name}): {verdict.reason}. Choose another pool from `manila pool-list`."
        )


def begin_migration(
    session: Session,
    share: Share,
    req: StartRequest,
    share_type: ShareType,
    network: str | None,
) -> Migration:
    """Move the share to `migrating` / `migration_starting` (compare-and-set) and add the new
    active migration row; the caller has checked the request."""
    source = active_instance(session, share)
    moved = session.execute(
        update(Share)
        .where(
            Share.id == share.id,
            Share.status == "available",
            state.move_where(TaskState.STARTING),
        )
        .values(status="migrating", task_state=TaskState.STARTING.value, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        raise InvalidStateError(
            f"Share {share.id} status must be available, but another request started "
            "migrating it at the same moment; check its task_state."
        )
    # An operator may have reset a stuck share; its old migration row is history now.
    session.execute(
        update(Migration)
        .where(Migration.share_id == share.id, Migration.active.is_(True))
        .values(active=False, outcome="superseded", finished_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    migration = Migration(
        share_id=share.id,
        source_instance_id=source.id,
        dest_host=req.host,
        preserve_metadata=req.preserve_metadata,
        preserve_snapshots=req.preserve_snapshots,
        writable=req.writable,
        nondisruptive=req.nondisruptive,
        force_host_assisted=req.force_host_assisted_migration,
        new_share_type_id=share_type.id if share_type.id != share.share_type_id else None,
        new_share_network_id=network if network != share.share_network_id else None,
        retain_source_s=get_settings().retain_source_s,
        active=True,
    )
    session.add(migration)
    session.flush()
    session.refresh(share)
    return migration


def withdraw_start(
    session: Session, migration_id: str, previous_task_state: str | None, reason: str
) -> bool:
    """Undo an admitted start whose flow run could not be created: the share goes back to
    `available` with the task_state it had, the migration row ends (`withdrawn`, inactive:
    its reservation on the destination pool is released).

    The state machine's one move back, allowed only from `migration_starting`, to a state
    a start may leave, and only while no run has picked the migration up (a run that does
    later finds it ended and stops). False when a run got there first: the start stands.
    """
    if not state.allowed(previous_task_state, TaskState.STARTING):
        raise InvalidStateError(f"{previous_task_state} is not a state a start leaves")
    migration = session.get(Migration, migration_id)
    if migration is None or migration.outcome is not None:
        return False
    moved = session.execute(
        update(Share)
        .where(
            Share.id == migration.share_id,
            Share.status == "migrating",
            Share.task_state == TaskState.STARTING.value,
        )
        .values(status="available", task_state=previous_task_state, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        return False
    if migration.rollback_of is not None and migration.dest_instance_id is not None:
        retained = session.get(ShareInstance, migration.dest_instance_id)
        if retained is not None:
            retained.status = "retained"  # a rollback's destination goes back to waiting
    session.execute(
        update(Migration)
        .where(Migration.id == migration_id, Migration.outcome.is_(None))
        .values(
            active=False,
            outcome=WITHDRAWN,
            error=f"start withdrawn: {reason}"[:4000],
            finished_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    session.flush()
    return True


def approval_time(action: str) -> dict[str, datetime]:
    """`complete_requested_at` for an approval: the switchover's start, for its duration."""
    return {"complete_requested_at": utcnow()} if action == "complete" else {}


def _request_action(
    session: Session,
    share_id: str,
    project_id: str | None,
    action: str,
    allowed: frozenset[TaskState],
    refused: str,
    new_task_state: TaskState | None,
) -> Migration:
    """Move `requested_action` NULL -> `action` (and optionally task_state) atomically."""
    share = get_share(session, share_id, project_id)
    if share.task_state not in allowed:
        raise InvalidStateError(_state_message(share.id, share.task_state, refused))
    migration = active_migration(session, share.id)
    if migration is None:
        raise InvalidStateError(
            f"Share {share.id} reports task_state {share.task_state} but sharemig has no "
            "active migration for it; repair it with reset_task_state and reset_status."
        )
    taken = session.execute(
        update(Migration)
        .where(Migration.id == migration.id, Migration.requested_action.is_(None))
        .values(requested_action=action, updated_at=utcnow(), **approval_time(action))
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        session.refresh(migration)
        raise InvalidStateError(
            f"Migration of share {share.id} already has a '{migration.requested_action}' "
            "request being carried out; watch task_state for the result."
        )
    if new_task_state is not None:
        moved = session.execute(
            update(Share)
            .where(Share.id == share.id, state.move_where(new_task_state, allowed))
            .values(task_state=new_task_state.value, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            raise InvalidStateError(_state_message(share.id, None, refused))
    session.flush()
    session.refresh(migration)
    session.refresh(share)
    return migration


def admit_complete(session: Session, share_id: str, *, project_id: str | None) -> Migration:
    """Accept `migration_complete`: phase 1 must be done and nothing else requested."""
    return _request_action(
        session,
        share_id,
        project_id,
        "complete",
        PHASE1_DONE_STATES,
        f"First migration phase of share {share_id} not completed yet; wait for task_state "
        "data_copying_completed or migration_driver_phase1_done (see migration_get_progress).",
        TaskState.COMPLETING,
    )


def admit_cancel(session: Session, share_id: str, *, project_id: str | None) -> Migration:
    """Accept `migration_cancel` in any phase-1 state; the flow stops and cleans up."""
    return _request_action(
        session,
        share_id,
        project_id,
        "cancel",
        CANCELLABLE_STATES,
        f"Migration of share {share_id} cannot be cancelled at this moment: the switchover "
        "is running; wait for it to finish.",
        None,
    )


def read_progress(session: Session, share_id: str, *, project_id: str | None) -> ProgressView:
    """`total_progress` never goes down: the reported value is kept as a high-water mark."""
    share = get_share(session, share_id, project_id)
    current = share.task_state
    if current is None:
        raise InvalidStateError(_state_message(share.id, None, ""))
    # The newest migration, active or not: a finished one still explains its end state.
    migration = session.scalar(
        select(Migration)
        .where(Migration.share_id == share.id)
        .order_by(Migration.created_at.desc())
        .limit(1)
    )
    if migration is None:
        # A no-op start or an admin reset leaves a task_state without a migration row.
        return ProgressView(100 if current not in STARTING_STATES else 0, current, {})
    details: dict[str, object] = {}
    if current in STARTING_STATES:
        computed = 0
    elif current in COPYING_STATES:
        computed = copy_percent(migration)
        details = {
            "current_file_path": migration.current_path,
            "files_total": migration.files_planned,
            "files_verified": migration.files_verified,
            "bytes_total": migration.bytes_planned,
            "bytes_verified": migration.bytes_verified,
            **pace(session, migration).as_details(),
        }
    elif current in (TaskState.ERROR, TaskState.CANCELLED, TaskState.COPY_ERROR):
        # The reference reports 100 here, which reads as success (contract §14.3); report how
        # far it got instead, and why it stopped.
        computed = 0
        if migration.error:
            details = {"error": migration.error}
    else:
        computed = 100
        if current in PHASE1_DONE_STATES and migration.error:
            details = {"switchover_error": migration.error}
    details.update(_sharemig_details(session, share, migration, current))
    total = max(computed, migration.progress)
    if total > migration.progress:
        session.execute(
            update(Migration)
            .where(Migration.id == migration.id, Migration.progress < total)
            .values(progress=total)
            .execution_options(synchronize_session=False)
        )
    return ProgressView(total, share.task_state, details)


def _sharemig_details(
    session: Session, share: Share, migration: Migration, current: str
) -> dict[str, object]:
    """sharemig's own `details` keys (2.59+): a queued start, a retained old instance."""
    from storage.models.base import aware
    from storage.pool_limits import queued_on
    from storage.retention import retained_instance

    extra: dict[str, object] = {}
    if current in STARTING_STATES:
        full = queued_on(session, migration)
        if full:
            extra["sharemig_queued"] = (
                "waiting for a migration slot on "
                + ", ".join(full)
                + " (max_concurrent_migrations)"
            )
    kept = retained_instance(session, share.id)
    if kept is not None:
        extra["sharemig_retained_instance"] = {
            "id": kept.id,
            "pool": kept.pool_name,
            "retained_until": (
                aware(kept.retained_until).isoformat(timespec="seconds")
                if kept.retained_until
                else None
            ),
        }
    if migration.rollback_of:
        extra["sharemig_rollback_of"] = migration.rollback_of
    return extra


def reset_task_state(session: Session, share_id: str, value: str | None) -> None:
    """Admin repair: set the share's task_state to `value` (contract §9.1 list, or None)."""
    state.reset(get_share(session, share_id), value)
    session.flush()
