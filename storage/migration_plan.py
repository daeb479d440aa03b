"""What a migration would do, worked out without doing it (`sharemig plan`, `--dry-run`).

The same admission checks as `migration_start` (so an invalid host gets the API's text), the
§9.5 decision, a capacity check, one walk of the source, and an estimate from this host's
measured mover rate. The transaction is rolled back: nothing is created or reserved.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.db import session_scope
from storage.mechanism import MigrationFlags, choose_mechanism
from storage.migration_admission import StartRequest, check_start
from storage.mover.census import count_tree
from storage.mover_rates import measured_rate
from storage.pools import driver_for, free_gb, pool_ref
from storage.progress import weighted_work
from storage.shares import active_instance, list_snapshots


@dataclass(frozen=True)
class MigrationPlan:
    share_id: str
    source_host: str | None
    destination_host: str
    noop: bool
    mechanism: str | None
    """`driver`, `host`, or None: the migration would end in `migration_error`."""
    decision: str
    """The decision table's row: why this mechanism (or why none)."""
    share_gb: int
    destination_free_gb: int
    capacity: str
    files: int
    bytes: int
    entries: int
    dirs: int
    links: int
    special_skipped: int
    mover_rate_work_per_s: float
    mover_rate_runs: int
    """Copies this host measured; 0 means the documented default rate was assumed."""
    mover_rate_host: str
    estimate_s: float
    source_can_freeze: bool
    freeze: str


def plan_migration(
    share_id: str, req: StartRequest, *, project_id: str | None = None, db_url: str | None = None
) -> MigrationPlan:
    """Raises what `migration_start` would raise for the same request (same messages)."""
    with session_scope(db_url) as s:
        check = check_start(s, share_id, req, project_id=project_id)
        share, pool = check.share, check.pool
        source = active_instance(s, share)
        source_driver = driver_for(s, source.pool_name)
        source_url = source_driver.instance_url(source.location)
        free = free_gb(s, pool) + (share.size if pool.name == share.host else 0)
        flags = MigrationFlags(
            writable=req.writable,
            nondisruptive=req.nondisruptive,
            preserve_metadata=req.preserve_metadata,
            preserve_snapshots=req.preserve_snapshots,
            force_host_assisted=req.force_host_assisted_migration,
        )
        compat = None
        if not req.force_host_assisted_migration:
            compat = source_driver.migration_check_compatibility(source.location, pool_ref(pool))
        decision = choose_mechanism(flags, compat, bool(list_snapshots(s, share.id)))
        can_freeze = source_driver.capabilities.freeze_support
        rate = measured_rate(s)
        share_id, source_host, share_gb = share.id, share.host, share.size
        source_pool = source.pool_name
        s.rollback()  # the capacity check locked the pool with a write; keep nothing
    counted = count_tree(source_url)
    estimate = weighted_work(files=counted.files, bytes_=counted.bytes) / rate.work_per_s
    return MigrationPlan(
        share_id=share_id,
        source_host=source_host,
        destination_host=req.host,
        noop=check.noop,
        mechanism=None if check.noop else decision.mechanism,
        decision="the share already lives there: nothing to do" if check.noop else decision.reason,
        share_gb=share_gb,
        destination_free_gb=free,
        capacity=f"fits: {share_gb} GiB needed, {free} GiB free on {req.host}",
        files=counted.files,
        bytes=counted.bytes,
        entries=counted.entries,
        dirs=counted.dirs,
        links=counted.links,
        special_skipped=counted.special,
        mover_rate_work_per_s=round(rate.work_per_s),
        mover_rate_runs=rate.runs,
        mover_rate_host=rate.hostname,
        estimate_s=round(estimate, 1),
        source_can_freeze=can_freeze,
        freeze=(
            f"yes: pool {source_pool} makes the source read-only for the copy"
            if can_freeze
            else f"no: pool {source_pool} cannot freeze it; writes made after a file "
            "was copied are caught by the final sync at the switchover"
        ),
    )
