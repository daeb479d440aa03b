"""`storage.migration_recovery`: the whole `recovery_action` table and what it is applied to,
no Prefect needed (`run_is_orphaned` is with the lease, in test_migration_lease.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from storage.migration_recovery import UnfinishedMigration, recovery_action, unfinished_migrations
from storage.models import Migration

NOW = datetime(2026, 1, 1, 12, 0, 0)


def _mig(
    task_state: str | None,
    *,
    requested: str | None = None,
    run: str | None = "run-1",
    age_s: float = 3600,
) -> UnfinishedMigration:
    return UnfinishedMigration("m", "s", task_state, requested, run, NOW - timedelta(seconds=age_s))


@pytest.mark.parametrize(
    ("mig", "run_state", "action"),
    [
        # A live run is never touched, whatever the migration's state.
        (_mig("data_copying_in_progress"), "RUNNING", "leave"),
        (_mig("data_copying_completed"), "PAUSED", "leave"),
        (_mig("migration_starting"), "SCHEDULED", "leave"),
        (_mig("data_copying_in_progress", requested="cancel"), "CANCELLING", "leave"),
        # ...but a waiting run gets a decision that reached only the database.
        (_mig("migration_completing", requested="complete"), "PAUSED", "deliver"),
        (_mig("data_copying_completed", requested="cancel"), "PAUSED", "deliver"),
        # A dead run: carry the migration on from the database.
        (_mig("data_copying_starting"), "CRASHED", "resume"),
        (_mig("data_copying_in_progress"), "FAILED", "resume"),
        (_mig("data_copying_completed"), "FAILED", "resume"),
        (_mig("data_copying_in_progress"), None, "resume"),  # run deleted in Prefect
        # A cancel asked for (API, or the Prefect UI) is honoured before the switchover...
        (_mig("data_copying_in_progress", requested="cancel"), "CRASHED", "cancel"),
        (_mig("data_copying_completed"), "CANCELLED", "cancel"),
        # ...never after it began: a switchover is only ever finished.
        (_mig("migration_completing", requested="complete"), "CRASHED", "resume"),
        (_mig("migration_completing", requested="complete"), "CANCELLED", "resume"),
        # Admitted without a run: its starter gets a grace period to create it.
        (_mig("migration_starting", run=None, age_s=5), None, "leave"),
        (_mig("migration_starting", run=None, age_s=600), None, "resume"),
        (_mig("migration_starting", run=None, requested="cancel", age_s=600), None, "cancel"),
    ],
)
def test_recovery_action(mig: UnfinishedMigration, run_state: str | None, action: str) -> None:
    assert recovery_action(mig, run_state, now=NOW) == action


def test_grace_is_the_callers() -> None:
    fresh = _mig("migration_starting", run=None, age_s=5)
    assert recovery_action(fresh, None, now=NOW, grace=timedelta(0)) == "resume"


def test_unfinished_migrations_are_the_active_ones_oldest_first(
    session: Session, db_url: str
) -> None:
    """What recovery looks at: active migrations without an outcome, with the share's state."""
    from storage.shares import create_share

    share = create_share(session, project_id="p1", size=1)
    rows = [
        Migration(
            share_id=share.id,
            source_instance_id="x",
            dest_host="h1@lfs#b",
            created_at=NOW + timedelta(seconds=age),
            active=active,
            outcome=outcome,
            flow_run_id=run,
        )
        for age, active, outcome, run in (
            (2, True, None, "run-2"),
            (1, True, None, None),
            (0, False, "migration_success", "run-0"),  # ended
            (3, False, None, "run-3"),  # superseded by a later start
        )
    ]
    session.add_all(rows)
    share.task_state = "data_copying_in_progress"
    session.commit()
    found = unfinished_migrations(db_url=db_url)
    assert [(m.id, m.flow_run_id) for m in found] == [(rows[1].id, None), (rows[0].id, "run-2")]
    assert {m.task_state for m in found} == {"data_copying_in_progress"}
