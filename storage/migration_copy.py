"""The data-moving steps of a migration: the driver's phase 1 and the host-assisted copy.

Like `storage.migration_lifecycle` (whose helpers they use), each step is idempotent and keyed
by the database: task_state says which steps are done, the mover's manifest which files are.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.orm import Session

from storage.db import session_scope
from storage.errors import (
    CapacityError,
    IncompleteCopyError,
    PermanentError,
    SharemigError,
    UnreadableSourceError,
    classified_os_errors,
)
from storage.migration_freeze import freeze_instance, late_write_check
from storage.migration_lifecycle import (
    PHASE1_DONE,
    MigrationStatus,
    load_migration,
    migration_ref,
    record_progress,
    set_state,
    set_task_state,
    status,
    stop_requested,
)
from storage.migration_state import TaskState
from storage.models import CopyJob, Migration, ShareInstance
from storage.models.base import utcnow
from storage.pools import driver_for
from storage.settings import get_settings
from storage.shares import get_share

log = logging.getLogger(__name__)

PROGRESS_SYNC_S = 1.0
"""How often a running copy writes its verified counters to the migration row."""

# --- driver-assisted phase 1 -------------------------------------------------------------


def driver_start(migration_id: str, *, db_url: str | None = None) -> None:
    """`migration_driver_starting` -> driver start -> `migration_driver_in_progress`."""
    with session_scope(db_url) as s:
        mig = load_migration(s, migration_id)
        if get_share(s, mig.share_id).task_state in (TaskState.DRIVER_IN_PROGRESS, *PHASE1_DONE):
            return
        set_state(s, mig, TaskState.DRIVER_STARTING)
        driver, ref = migration_ref(s, mig, db_url)
    with classified_os_errors("starting the driver-assisted migration"):
        driver.migration_start(ref)
    set_task_state(migration_id, TaskState.DRIVER_IN_PROGRESS, db_url=db_url)


def driver_continue(migration_id: str, *, db_url: str | None = None) -> bool:
    """Advance the driver's phase 1; True (and `migration_driver_phase1_done`) once done."""
    with session_scope(db_url) as s:
        mig = load_migration(s, migration_id)
        if get_share(s, mig.share_id).task_state in PHASE1_DONE:
            return True
        driver, ref = migration_ref(s, mig, db_url)
    with classified_os_errors("driver-assisted copy"):
        done = driver.migration_continue(
            ref, should_stop=stop_requested(migration_id, db_url=db_url)
        )
        report = driver.migration_get_progress(ref)

    def counter(key: str) -> int:
        value = report.get(key, 0)
        return value if isinstance(value, int) else 0

    # The driver's byte and file counters go through the same formula as the host copy's.
    record_progress(
        migration_id,
        files_planned=counter("files_planned"),
        bytes_planned=counter("bytes_planned"),
        files_verified=counter("files_verified"),
        bytes_verified=counter("bytes_verified"),
        db_url=db_url,
    )
    if done:
        set_task_state(migration_id, TaskState.DRIVER_PHASE1_DONE, db_url=db_url)
    return done


def driver_complete(migration_id: str, *, db_url: str | None = None) -> None:
    """The driver's final sync and switch of the data (idempotent on the driver's side)."""
    with session_scope(db_url) as s:
        driver, ref = migration_ref(s, load_migration(s, migration_id), db_url)
    with classified_os_errors("driver-assisted switchover"):
        driver.migration_complete(ref)


# --- host-assisted phase 1 and final sync ------------------------------------------------


def _copy_urls(session: Session, mig: Migration) -> tuple[str, str]:
    source = session.get(ShareInstance, mig.source_instance_id)
    dest = session.get(ShareInstance, mig.dest_instance_id) if mig.dest_instance_id else None
    if source is None or dest is None:
        raise PermanentError(f"migration {mig.id} lost its source or destination instance")
    src = driver_for(session, source.pool_name).instance_url(source.location)
    dst = driver_for(session, dest.pool_name).instance_url(dest.location)
    return src, dst


def _job_id(mig: Migration) -> str:
    """The mover job copying this migration's data (named after the migration)."""
    return mig.copy_job_id or mig.id


def sync_copy_progress(
    migration_id: str, *, job_id: str | None = None, db_url: str | None = None
) -> MigrationStatus:
    """Copy the mover's verified counters onto the migration row (what the API reports)."""
    from storage.mover import job_progress

    if job_id is None:
        with session_scope(db_url) as s:
            job_id = _job_id(load_migration(s, migration_id))
    p = job_progress(job_id, db_url=db_url)
    record_progress(
        migration_id,
        files_planned=p.files_planned,
        bytes_planned=p.bytes_planned,
        files_verified=p.files_verified,
        bytes_verified=p.bytes_verified,
        current_path=p.current_path,
        db_url=db_url,
    )
    return status(migration_id, db_url=db_url)


def _repair_destination(migration_id: str, job_id: str, dst: str, db_url: str | None) -> int:
    """Files verified earlier but since removed or altered at the destination (it may have
    waited days for approval) are copied again by the plan that follows; returns how many."""
    from storage.mover.audit import requeue_damaged

    with classified_os_errors("checking the destination against the manifest"):
        damaged = requeue_damaged(job_id, dst, db_url=db_url)
    if damaged:
        log.warning(
            "migration %s: %d verified files changed or vanished at the destination since "
            "they were copied (first: %r); copying them again",
            migration_id,
            len(damaged),
            damaged[0],
        )
    return len(damaged)


def host_plan(
    migration_id: str,
    *,
    final_sync: bool = False,
    on_batches: Callable[[list[int]], None] | None = None,
    db_url: str | None = None,
) -> list[int]:
    """Walk the source into the manifest (again, incrementally, for the final sync).

    Phase 1 freezes the source (contract §9.5 step 3: read-only) and moves through
    `data_copying_starting` -> `data_copying_in_progress`. `on_batches` gets each batch as
    soon as the walk closes it. Returns the batches left to copy (including those handed out).
    """
    from storage.mover import pending_batches, plan_copy
    from storage.mover.pool import prestart

    with session_scope(db_url) as s:
        mig = load_migration(s, migration_id)
        if not final_sync:
            set_state(s, mig, TaskState.COPY_STARTING)
            source = s.get(ShareInstance, mig.source_instance_id)
            if source is not None and not freeze_instance(s, source):
                log.warning(
                    "migration %s: pool %s cannot freeze the source; a write made after its "
                    "file was copied is caught only by the final sync at the switchover",
                    migration_id,
                    source.pool_name,
                )
        job_id = mig.copy_job_id = _job_id(mig)
        src, dst = _copy_urls(s, mig)
        is_rollback = mig.rollback_of is not None
    if is_rollback:
        from storage.rollback import seed_manifest

        with classified_os_errors("comparing the share with its retained instance"):
            seed_manifest(job_id, src, dst, db_url=db_url)
    if not get_settings().dask_address:  # batches run on this host's pool
        prestart(src, dst)
    _repair_destination(migration_id, job_id, dst, db_url)
    with classified_os_errors("walking the source share"):
        plan = plan_copy(job_id, src, dst, db_url=db_url, on_batches=on_batches)
    if plan.vanished or plan.vanished_while_walking:
        # Deleted by a client under phase 1's walk (the switchover's source is frozen): they
        # no longer exist, so they are not migrated; said here so it is never silent.
        log.warning(
            "migration %s: %d source entries vanished while being walked (first: %s) and %d "
            "planned earlier are gone from the source; none of them is migrated",
            migration_id,
            plan.vanished_while_walking,
            ", ".join(plan.vanished_paths[:3]) or "-",
            plan.vanished,
        )
    if not final_sync:
        set_task_state(migration_id, TaskState.COPY_IN_PROGRESS, db_url=db_url)
    sync_copy_progress(migration_id, job_id=job_id, db_url=db_url)
    return list(pending_batches(job_id, db_url=db_url))


def host_copy_round(
    migration_id: str,
    *,
    final_sync: bool = False,
    stoppable: bool = True,
    db_url: str | None = None,
) -> MigrationStatus:
    """One round of the host copy: the walk, with each batch copied as soon as the walk
    closes it, on an executor this call opens and owns (`open_executor`: the Dask cluster
    `SHAREMIG_DASK_ADDRESS` names, else worker processes for local pairs, as for
    `run_copy`). A recorded cancel stops every batch at a file boundary (`CancelledError`).
    Batches that fail for good raise once every running batch has ended, so cleanup never
    races a writer; files that could not be copied stay unverified for `host_finish` and
    the next round to count."""
    from storage.mover.batch import UNREADABLE
    from storage.mover.executor import open_executor
    from storage.mover.plan import failed_entries
    from storage.mover.schedule import BatchScheduler

    with session_scope(db_url) as s:
        mig = load_migration(s, migration_id)
        job_id = _job_id(mig)
        src, dst = _copy_urls(s, mig)
        dest_pool = mig.dest_host
    stop = stop_requested(migration_id, db_url=db_url) if stoppable else None
    synced = [0.0]

    def progress(_: object) -> None:
        now = time.monotonic()
        if now - synced[0] >= PROGRESS_SYNC_S:  # the API and the artifact read these counters
            synced[0] = now
            sync_copy_progress(migration_id, job_id=job_id, db_url=db_url)

    from storage.pool_limits import migration_budget

    budget = migration_budget(migration_id, db_url=db_url)
    with open_executor(src, dst, budget=budget, db_url=db_url) as pool:
        log.info("migration %s: copy batches run on %s", migration_id, pool.describe())
        scheduler = BatchScheduler(job_id, db_url, pool, progress, stop)
        try:
            batches = host_plan(
                migration_id, final_sync=final_sync, on_batches=scheduler.submit, db_url=db_url
            )
        except SharemigError:
            # A walk that failed (say, an unreadable directory) after handing out batches:
            # they end first, so the cleanup that follows never races a writer.
            with contextlib.suppress(SharemigError):
                scheduler.drain()
            raise
        scheduler.submit(batches)
        with classified_os_errors("copying the share's batches"):
            scheduler.drain()
    if any(isinstance(f, CapacityError) for f in scheduler.failures):
        raise CapacityError(
            f"migration {migration_id}: the destination pool {dest_pool} is full "
            f"({_free_space(dst)}; first: {scheduler.errors[0]}); free space on it, or "
            "cancel and migrate to another pool"
        )
    if scheduler.errors:
        failed, first = failed_entries(job_id, db_url=db_url)
        unreadable = [f for f in first if UNREADABLE in f]
        if unreadable:
            raise UnreadableSourceError(
                f"migration {migration_id}: {failed} source file(s) could not be copied, "
                f"{'; '.join(unreadable)}{'; ...' if failed > len(first) else ''}: their data "
                "would not be migrated; make them readable by the mover and start again"
            )
        raise PermanentError(
            f"migration {migration_id}: {len(scheduler.errors)} batch(es) failed "
            f"(first: {scheduler.errors[0]})"
        )
    return sync_copy_progress(migration_id, job_id=job_id, db_url=db_url)


def _free_space(url: str) -> str:
    """ "X MiB free of Y MiB" for a local destination, as the filesystem reports it."""
    try:
        usage = shutil.disk_usage(url)
    except (OSError, ValueError):
        return "free space unknown"
    return f"{usage.free >> 20} MiB free of {usage.total >> 20} MiB"


def host_finish(migration_id: str, *, final_sync: bool = False, db_url: str | None = None) -> bool:
    """Directory metadata, hard links, removals. True when every manifest entry is verified:
    phase 1 then moves to `data_copying_completed`; otherwise back to copying, and the caller
    runs another round (entries changed or failed under the copy)."""
    from storage.mover import finish_copy

    with session_scope(db_url) as s:
        mig = load_migration(s, migration_id)
        if not final_sync:
            set_state(s, mig, TaskState.COPY_COMPLETING)
        job_id = _job_id(mig)
    with classified_os_errors("finishing the copy"):
        complete = finish_copy(job_id, db_url=db_url).complete
    sync_copy_progress(migration_id, job_id=job_id, db_url=db_url)
    if complete and not final_sync:
        _record_rate(job_id, db_url)
    if not final_sync:
        target = TaskState.COPY_COMPLETED if complete else TaskState.COPY_IN_PROGRESS
        set_task_state(migration_id, target, db_url=db_url)
    if not complete:
        open_count, first = unverified_entries(migration_id, db_url=db_url)
        log.warning(
            "migration %s: %d manifest entries are not verified after this round (first: %r)",
            migration_id,
            open_count,
            first,
        )
    return complete


def _record_rate(job_id: str, db_url: str | None) -> None:
    """This host's measured mover rate, for the estimates of later plans."""
    from storage.mover_rates import record_copy_rate

    with session_scope(db_url) as s:
        job = s.get(CopyJob, job_id)
        if job is not None:
            record_copy_rate(s, job, finished_at=utcnow())


def unverified_entries(migration_id: str, *, db_url: str | None = None) -> tuple[int, bytes | None]:
    """How many manifest entries are planned, changed or failed, and the first one's path."""
    from storage.mover.plan import open_entries

    with session_scope(db_url) as s:
        job_id = _job_id(load_migration(s, migration_id))
    return open_entries(job_id, db_url=db_url)


def frozen_and_unchanged(migration_id: str, *, db_url: str | None = None) -> bool:
    """True when the switchover may skip the final re-walk: the source was frozen for the
    whole copy, nothing was written to it since (ctime), the destination still holds
    every verified file and no entry waits to be copied. Otherwise the caller runs the full
    final sync."""
    with session_scope(db_url) as s:
        mig = load_migration(s, migration_id)
        source = s.get(ShareInstance, mig.source_instance_id)
        if source is None or source.frozen_at_ns is None:
            return False
        check_late_writes = late_write_check(s, source)
        job_id = _job_id(mig)
        _, dst = _copy_urls(s, mig)
    # The source walk (ctime) and the destination audit touch different disks: side by side.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="late-writes") as beside:
        late_future = beside.submit(check_late_writes)
        damaged = _repair_destination(migration_id, job_id, dst, db_url)
        late = late_future.result()
    if late:
        log.warning(
            "migration %s: %d entries of the frozen source changed after the freeze (first: "
            "%r): a writer kept a descriptor from before it; walking the source again",
            migration_id,
            len(late),
            late[0],
        )
        return False
    # An earlier attempt may have queued entries again and failed to copy them (a full
    # destination): only a final sync copies them, and its error is the one to report.
    return not damaged and not unverified_entries(migration_id, db_url=db_url)[0]


def require_complete(migration_id: str, *, db_url: str | None = None) -> None:
    """The switchover's gate: refuse while any manifest entry is unverified."""
    with session_scope(db_url) as s:
        mig = load_migration(s, migration_id)
        if mig.mechanism != "host":
            return
    count, first = unverified_entries(migration_id, db_url=db_url)
    if count:
        raise IncompleteCopyError(
            f"migration {migration_id}: {count} manifest entries are not verified at the "
            f"destination (first: {first!r}); the share stays on its source"
        )
