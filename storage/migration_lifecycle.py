"""Migration state transitions the flows call, each idempotent and keyed by the database.

Every function takes a migration id (plus `db_url`) and opens its own short transaction, so a
task can call it again after a retry, a crash or a suspend/resume and get the same result:
finished work is recognised from the rows (task_state, instances, manifest) and skipped.
The data itself moves through `storage.mover` (host-assisted) or the source pool's driver.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.orm import Session

from storage import migration_state as state
from storage.db import session_scope
from storage.drivers.base import MigrationRef, ShareDriver
from storage.errors import (
    CapacityError,
    InvalidStateError,
    NotFoundError,
    PermanentError,
    classified_os_errors,
)
from storage.migration_state import TaskState
from storage.models import Migration, Share, ShareInstance
from storage.models.base import utcnow
from storage.pools import driver_for, free_gb, get_pool, lock_pool, pool_ref
from storage.progress import copy_percent
from storage.scheduler import fit
from storage.shares import create_instance, get_share, list_snapshots

log = logging.getLogger(__name__)

PHASE1_DONE = state.PHASE1_DONE
TERMINAL = state.TERMINAL


@dataclass(frozen=True)
class MigrationStatus:
    """A plain copy of the row, small enough to cross a task boundary."""

    id: str
    share_id: str
    task_state: str | None
    mechanism: str | None
    requested_action: str | None
    active: bool
    outcome: str | None
    error: str | None
    dest_instance_id: str | None
    flow_run_id: str | None
    files_planned: int
    bytes_planned: int
    files_verified: int
    bytes_verified: int
    progress_mark: int = 0

    @property
    def finished(self) -> bool:
        return self.outcome is not None

    @property
    def phase1_done(self) -> bool:
        return self.task_state in PHASE1_DONE or self.task_state == TaskState.COMPLETING

    @property
    def percent(self) -> int:
        """The one progress formula over the verified counters, never below its high-water
        mark; 100 once phase 1 is done."""
        done = self.phase1_done or self.outcome == TaskState.SUCCESS
        return max(self.progress_mark, copy_percent(self, finished=done))


def load_migration(session: Session, migration_id: str) -> Migration:
    mig = session.get(Migration, migration_id)
    if mig is None:
        raise NotFoundError(f"migration {migration_id} does not exist")
    return mig


def _status(mig: Migration, share: Share) -> MigrationStatus:
    return MigrationStatus(
        id=mig.id,
        share_id=mig.share_id,
        task_state=share.task_state,
        mechanism=mig.mechanism,
        requested_action=mig.requested_action,
        active=mig.active,
        outcome=mig.outcome,
        error=mig.error,
        dest_instance_id=mig.dest_instance_id,
        flow_run_id=mig.flow_run_id,
        files_planned=mig.files_planned,
        bytes_planned=mig.bytes_planned,
        files_verified=mig.files_verified,
        bytes_verified=mig.bytes_verified,
        progress_mark=mig.progress,
    )


def status(migration_id: str, *, db_url: str | None = None) -> MigrationStatus:
    with session_scope(db_url) as s:
        mig = load_migration(s, migration_id)
        return _status(mig, get_share(s, mig.share_id))


def set_state(session: Session, mig: Migration, target: TaskState) -> None:
    """Move the share's task_state while this migration is still the live one."""
    if mig.outcome is not None:
        raise InvalidStateError(f"migration {mig.id} already ended ({mig.outcome})")
    state.move(get_share(session, mig.share_id), target)
    session.flush()


def set_task_state(migration_id: str, target: TaskState, *, db_url: str | None = None) -> None:
    with session_scope(db_url) as s:
        set_state(s, load_migration(s, migration_id), target)


def begin(
    migration_id: str, flow_run_id: str | None, *, advance: bool = True, db_url: str | None = None
) -> MigrationStatus:
    """A run picked the migration up: record the run, `migration_starting` -> `in_progress`
    (with `advance=False` the share stays starting: queued for a pool's slot, see
    `advance_start`)."""
    with session_scope(db_url) as s:
        mig = load_migration(s, migration_id)
        share = get_share(s, mig.share_id)
        if flow_run_id and mig.outcome is None:
            mig.flow_run_id = flow_run_id
        if advance and mig.outcome is None and share.task_state == TaskState.STARTING:
            state.move(share, TaskState.IN_PROGRESS)
        s.flush()
        return _status(mig, share)


def advance_start(migration_id: str, *, db_url: str | None = None) -> None:
    """The run may move data now: `migration_starting` -> `migration_in_progress`."""
    with session_scope(db_url) as s:
        mig = load_migration(s, migration_id)
        share = get_share(s, mig.share_id)
        if mig.outcome is None and share.task_state == TaskState.STARTING:
            state.move(share, TaskState.IN_PROGRESS)


def record_flow_run(migration_id: str, flow_run_id: str, *, db_url: str | None = None) -> None:
    with session_scope(db_url) as s:
        mig = load_migration(s, migration_id)
        if mig.outcome is None:
            mig.flow_run_id = flow_run_id


def reserve_destination(migration_id: str, *, db_url: str | None = None) -> str:
    """Validate the destination pool and create the destination instance (`migrating_to`).

    The instance row is the reservation: its size counts against the pool from now on.
    A second call returns the instance the first one made.
    """
    with session_scope(db_url) as s:
        mig = load_migration(s, migration_id)
        if mig.dest_instance_id and s.get(ShareInstance, mig.dest_instance_id) is not None:
            return mig.dest_instance_id
        share = get_share(s, mig.share_id)
        try:
            pool = lock_pool(s, mig.dest_host)
        except NotFoundError:
            raise PermanentError(
                f"destination {mig.dest_host!r} is not a pool in the inventory; start the "
                "migration again with a host from `sharemig pools` (host@backend#pool)"
            ) from None
        source = s.get(ShareInstance, mig.source_instance_id)
        if source is None:
            raise PermanentError(f"source instance {mig.source_instance_id} no longer exists")
        if pool.name == source.pool_name and not (
            mig.new_share_type_id or mig.new_share_network_id
        ):
            raise PermanentError(f"share {share.id} already lives on {pool.name}")
        type_id = mig.new_share_type_id or share.share_type_id
        from storage.catalog import get_share_type

        # `free_gb` still counts this migration's own reservation (taken at admission).
        free = free_gb(s, pool) + share.size
        verdict = fit(pool, get_share_type(s, type_id), share.size, free, None)
        if verdict.reason:
            raise CapacityError(
                f"pool {pool.name} cannot take share {share.id} ({share.size} GiB): "
                f"{verdict.reason}; pick another destination"
            )
        inst = create_instance(
            s,
            share,
            pool.name,
            status="migrating_to",
            share_type_id=type_id,
            share_network_id=mig.new_share_network_id or share.share_network_id,
        )
        mig.dest_instance_id = inst.id
        s.flush()
        return inst.id


def migration_ref(
    session: Session, mig: Migration, db_url: str | None
) -> tuple[ShareDriver, MigrationRef]:
    """The source pool's driver and the `MigrationRef` it needs."""
    source = session.get(ShareInstance, mig.source_instance_id)
    dest = session.get(ShareInstance, mig.dest_instance_id) if mig.dest_instance_id else None
    if source is None or dest is None:
        raise PermanentError(f"migration {mig.id} lost its source or destination instance")
    ref = MigrationRef(
        migration_id=mig.id,
        source_location=source.location,
        dest_pool=pool_ref(get_pool(session, dest.pool_name)),
        dest_location=dest.location,
        snapshot_ids=tuple(sn.id for sn in list_snapshots(session, mig.share_id)),
        db_url=db_url,
    )
    return driver_for(session, source.pool_name), ref


def choose_path(migration_id: str, *, db_url: str | None = None) -> str:
    """Driver-assisted or host-assisted (contract §9.5); the choice is stored and reused."""
    from storage.mechanism import MigrationFlags, choose_mechanism

    with session_scope(db_url) as s:
        mig = load_migration(s, migration_id)
        if mig.mechanism:
            return mig.mechanism
        flags = MigrationFlags(
            writable=mig.writable,
            nondisruptive=mig.nondisruptive,
            preserve_metadata=mig.preserve_metadata,
            preserve_snapshots=mig.preserve_snapshots,
            force_host_assisted=mig.force_host_assisted,
        )
        compat = None
        if not mig.force_host_assisted:
            driver, ref = migration_ref(s, mig, db_url)
            with classified_os_errors("asking the source driver about compatibility"):
                compat = driver.migration_check_compatibility(ref.source_location, ref.dest_pool)
        decision = choose_mechanism(flags, compat, bool(list_snapshots(s, mig.share_id)))
        log.info("migration %s: %s", mig.id, decision.reason)
        if decision.mechanism is None:
            raise PermanentError(decision.reason)
        mig.mechanism = decision.mechanism
        return decision.mechanism


def stop_requested(migration_id: str, *, db_url: str | None = None) -> Callable[[], bool]:
    """A `should_stop` for long copies: true once a cancel is recorded (read at most 2x/s)."""
    last = [0.0, False]

    def check() -> bool:
        now = time.monotonic()
        if not last[1] and now - float(last[0]) >= 0.5:
            last[0] = now
            last[1] = pending_request(migration_id, db_url=db_url) == "cancel"
        return bool(last[1])

    return check


def pending_request(migration_id: str, *, db_url: str | None = None) -> str | None:
    """`complete` / `cancel` when the API (or an operator) asked for one, else None."""
    with session_scope(db_url) as s:
        return load_migration(s, migration_id).requested_action


def take_decision(
    migration_id: str, approve: bool, reason: str | None, *, db_url: str | None = None
) -> str:
    """Record an approval or a rejection that came through Prefect (the UI's Resume form).

    The API records its request itself (admission, compare-and-set); whichever request reached
    the database first wins, and the winner is returned: `complete` or `cancel`.
    """
    from storage.migration_admission import approval_time

    action = "complete" if approve else "cancel"
    with session_scope(db_url) as s:
        taken = s.execute(
            update(Migration)
            .where(Migration.id == migration_id, Migration.requested_action.is_(None))
            .values(requested_action=action, updated_at=utcnow(), **approval_time(action))
            .execution_options(synchronize_session=False)
        )
        mig = load_migration(s, migration_id)
        s.refresh(mig)
        if taken.rowcount == 1 and reason:  # type: ignore[attr-defined]
            mig.approval_reason = mig.approval_reason or reason[:4000]
        winner = str(mig.requested_action)
        if winner == "complete" and mig.outcome is None:
            set_state(s, mig, TaskState.COMPLETING)
        return winner


def record_progress(
    migration_id: str,
    *,
    files_planned: int,
    bytes_planned: int,
    files_verified: int,
    bytes_verified: int,
    current_path: str | None = None,
    db_url: str | None = None,
) -> None:
    """Copy counters for `migration_get_progress`; verified counts never move backwards, and
    the percentage they give is kept as the migration's high-water mark."""
    with session_scope(db_url) as s:
        mig = load_migration(s, migration_id)
        mig.files_planned, mig.bytes_planned = files_planned, bytes_planned
        if files_verified > mig.files_verified or bytes_verified > mig.bytes_verified:
            mig.verified_at = utcnow()
        mig.files_verified = max(mig.files_verified, files_verified)
        mig.bytes_verified = max(mig.bytes_verified, bytes_verified)
        mig.current_path = current_path
        mig.progress = max(mig.progress, copy_percent(mig))


def approval_reason(migration_id: str, *, db_url: str | None = None) -> str | None:
    with session_scope(db_url) as s:
        return load_migration(s, migration_id).approval_reason


def note_reason(migration_id: str, reason: str, *, db_url: str | None = None) -> None:
    """Keep the reason a person gave with their approve/reject (first one wins)."""
    with session_scope(db_url) as s:
        mig = load_migration(s, migration_id)
        mig.approval_reason = mig.approval_reason or reason[:4000]


def record_failure(migration_id: str, reason: str, *, db_url: str | None = None) -> None:
    with session_scope(db_url) as s:
        load_migration(s, migration_id).error = reason[:4000]
