"""What to do with a migration whose flow run is gone: the decision, from the database's view.

A worker killed mid-copy, a Prefect server restarted, a run cancelled in the Prefect UI while
suspended (no process, so no hook ran), a shim killed between admitting a start and creating
its run: each leaves an active migration that nothing is working on. `flows.recovery` reads
the run states from Prefect and applies `recovery_action` to each; the database decides the
end state, so a recovered migration reaches the same end as an undisturbed one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select

from storage.db import session_scope
from storage.migration_lease import LeaseView
from storage.migration_state import TaskState
from storage.models import Migration, Share
from storage.models.base import utcnow

Action = Literal["resume", "cancel", "leave", "deliver"]

# Prefect state types (`StateType` values) a run may be in.
LIVE_RUN_STATES = frozenset({"SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING"})
DEAD_RUN_STATES = frozenset({"CRASHED", "FAILED", "COMPLETED", "CANCELLED"})
# A start creates its run right after admission; give it this long before calling it lost.
RUN_CREATION_GRACE = timedelta(seconds=60)
# From here the switchover may have begun: it is only ever carried forward, never undone.
FORWARD_ONLY_STATES = frozenset({TaskState.COMPLETING})


@dataclass(frozen=True)
class UnfinishedMigration:
    id: str
    share_id: str
    task_state: str | None
    requested_action: str | None
    flow_run_id: str | None
    created_at: datetime
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None


def unfinished_migrations(*, db_url: str | None = None) -> list[UnfinishedMigration]:
    """Every migration that has not reached an outcome yet, oldest first."""
    with session_scope(db_url) as s:
        rows = s.execute(
            select(Migration, Share.task_state)
            .join(Share, Share.id == Migration.share_id)
            .where(Migration.active.is_(True), Migration.outcome.is_(None))
            .order_by(Migration.created_at)
        )
        return [
            UnfinishedMigration(
                m.id,
                m.share_id,
                state,
                m.requested_action,
                m.flow_run_id,
                m.created_at,
                m.lease_owner,
                m.lease_expires_at,
            )
            for m, state in rows
        ]


def recovery_action(
    mig: UnfinishedMigration,
    run_state: str | None,
    *,
    now: datetime | None = None,
    grace: timedelta = RUN_CREATION_GRACE,
) -> Action:
    """`resume` (a new run carries it on), `cancel` (abort, source intact), `deliver` (a
    recorded complete/cancel to the run that waits for it) or `leave`.

    `run_state` is the Prefect state type of the migration's run, None when there is no run.
    A cancel request (API, CLI or the Prefect UI) is honoured unless the switchover began.
    """
    if run_state == "PAUSED" and mig.requested_action in ("complete", "cancel"):
        # The decision reached the database but not the waiting run (Prefect did not answer
        # the request that made it): hand it over now.
        return "deliver"
    if run_state in LIVE_RUN_STATES:
        return "leave"
    if run_state is None and mig.flow_run_id is None:
        created = mig.created_at.replace(tzinfo=None)
        current = (now or utcnow()).replace(tzinfo=None)
        if current - created < grace:
            return "leave"
    if mig.task_state in FORWARD_ONLY_STATES:
        return "resume"
    if mig.requested_action == "cancel" or run_state == "CANCELLED":
        return "cancel"
    return "resume"


# A run in one of these states has (or is about to have) a process working on it.
ORPHANABLE_RUN_STATES = frozenset({"RUNNING", "PENDING", "CANCELLING"})
# A run that has not taken its migration's lease yet is still starting: its process starts,
# imports Prefect and sharemig and runs its first task. On a loaded host that takes far longer
# than a short lease TTL (30 s and more with two cores shared by many processes).
RUN_START_GRACE = timedelta(seconds=60)


def run_is_orphaned(
    mig: UnfinishedMigration,
    run_state: str | None,
    state_since: datetime | None,
    *,
    ttl: timedelta,
    now: datetime | None = None,
) -> bool:
    """Prefect shows the run working, but nobody holds the migration's lease: its process
    died with its worker (or its host). A run that held the lease is dead once it has gone a
    TTL without renewing it; one that never took it is given `RUN_START_GRACE` to start."""
    if run_state not in ORPHANABLE_RUN_STATES or mig.flow_run_id is None:
        return False
    current = (now or utcnow()).replace(tzinfo=None)
    if LeaseView(mig.lease_owner, mig.lease_expires_at).live_for(mig.flow_run_id, current):
        return False
    if state_since is None:
        return True
    held_it = mig.lease_owner == mig.flow_run_id
    grace = ttl if held_it else max(ttl, RUN_START_GRACE)
    return current - state_since.replace(tzinfo=None) > grace
