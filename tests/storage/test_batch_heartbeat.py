"""A batch running away from its flow run (a Dask worker) keeps its migration's live lease
alive and sees a recorded cancel, on a real database; it never revives an expired lease."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from storage import migration_lease as lease
from storage.batch_heartbeat import BatchHeartbeat, cancel_recorded, renew_for_job
from storage.db import session_scope
from storage.models import Migration
from storage.models.base import utcnow
from storage.shares import create_share

JOB = "job-of-the-migration"


@pytest.fixture
def migration_id(session: Session, db_url: str) -> str:
    share = create_share(session, project_id="p1", size=1)
    mig = Migration(
        share_id=share.id, source_instance_id="x", dest_host="h1@lfs#b", copy_job_id=JOB
    )
    session.add(mig)
    session.commit()
    return mig.id


def _expires(db_url: str, migration_id: str) -> datetime:
    """The lease's expiry, naive UTC (SQLite hands back naive datetimes, PostgreSQL aware)."""
    with session_scope(db_url) as s:
        mig = s.get(Migration, migration_id)
        assert mig is not None and mig.lease_expires_at is not None
        return mig.lease_expires_at.replace(tzinfo=None)


def _now() -> datetime:
    return utcnow().replace(tzinfo=None)


def test_a_batch_pushes_on_a_live_lease_but_never_revives_an_expired_one(
    migration_id: str, db_url: str
) -> None:
    assert not renew_for_job(JOB, timedelta(seconds=60), db_url=db_url)  # no lease held
    assert lease.take(migration_id, "run-1", db_url=db_url)
    before = _expires(db_url, migration_id)
    assert renew_for_job(JOB, timedelta(seconds=600), db_url=db_url)
    after = _expires(db_url, migration_id)
    assert after > before
    with session_scope(db_url) as s:
        mig = s.get(Migration, migration_id)
        assert mig is not None
        mig.lease_expires_at = utcnow() - timedelta(seconds=1)
    assert not renew_for_job(JOB, timedelta(seconds=600), db_url=db_url)
    with session_scope(db_url) as s:
        mig = s.get(Migration, migration_id)
        assert mig is not None
        assert mig.lease_owner == "run-1"
        # Recovery may act, whatever batches still run.
        assert not lease.LeaseView(mig.lease_owner, mig.lease_expires_at).live_for("run-1")


def test_the_heartbeat_renews_while_it_runs_and_sees_a_cancel(
    migration_id: str, db_url: str
) -> None:
    assert lease.take(migration_id, "run-1", db_url=db_url)
    with session_scope(db_url) as s:
        mig = s.get(Migration, migration_id)
        assert mig is not None
        mig.lease_expires_at = utcnow() + timedelta(seconds=1)
    with BatchHeartbeat(JOB, timedelta(seconds=300), db_url) as beat:
        assert not beat.cancel_requested()
    assert _expires(db_url, migration_id) > _now() + timedelta(seconds=200)
    with session_scope(db_url) as s:
        mig = s.get(Migration, migration_id)
        assert mig is not None
        mig.requested_action = "cancel"
    assert cancel_recorded(JOB, db_url=db_url)
