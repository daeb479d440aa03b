"""The migration lease on a real database: who works on a migration, and when recovery may
call a run dead (instead of scanning this host's `/proc`)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from storage import migration_lease as lease
from storage.db import session_scope
from storage.errors import LeaseLostError
from storage.migration_recovery import (
    UnfinishedMigration,
    run_is_orphaned,
    unfinished_migrations,
)
from storage.models import Migration
from storage.models.base import utcnow
from storage.shares import create_share

TTL = timedelta(seconds=30)


@pytest.fixture
def migration_id(session: Session, db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    from storage.settings import reset_settings

    monkeypatch.setenv("SHAREMIG_LEASE_TTL_S", "1")
    reset_settings()
    share = create_share(session, project_id="p1", size=1)
    mig = Migration(share_id=share.id, source_instance_id="x", dest_host="h1@lfs#b")
    session.add(mig)
    session.commit()
    return mig.id


def _row(db_url: str, migration_id: str) -> Migration:
    with session_scope(db_url) as s:
        mig = s.get(Migration, migration_id)
        assert mig is not None
        s.expunge(mig)
        return mig


def _expire(db_url: str, migration_id: str) -> None:
    with session_scope(db_url) as s:
        mig = s.get(Migration, migration_id)
        assert mig is not None
        mig.lease_expires_at = utcnow() - timedelta(seconds=1)


def test_one_owner_at_a_time_until_the_lease_expires(migration_id: str, db_url: str) -> None:
    assert lease.take(migration_id, "run-1", db_url=db_url)
    assert lease.take(migration_id, "run-1", db_url=db_url)  # its own: a renewal
    assert not lease.take(migration_id, "run-2", db_url=db_url)
    assert not lease.renew(migration_id, "run-2", db_url=db_url)
    assert _row(db_url, migration_id).lease_owner == "run-1"
    _expire(db_url, migration_id)
    assert lease.take(migration_id, "run-2", db_url=db_url)  # run-1 stalled: taken over
    assert not lease.renew(migration_id, "run-1", db_url=db_url)
    lease.release(migration_id, "run-1", db_url=db_url)  # not its lease: nothing happens
    assert _row(db_url, migration_id).lease_owner == "run-2"
    lease.release(migration_id, "run-2", db_url=db_url)
    row = _row(db_url, migration_id)
    assert (row.lease_owner, row.lease_expires_at) == (None, None)


def test_a_held_lease_is_renewed_while_the_block_runs_and_released_after(
    migration_id: str, db_url: str
) -> None:
    from tests.kit.waiting import wait_for

    with lease.held(migration_id, "run-1", db_url=db_url) as held:
        first = _row(db_url, migration_id).lease_expires_at
        assert first is not None
        # The thread renews every third of the TTL (1 s here): the expiry moves on.
        wait_for(
            lambda: (_row(db_url, migration_id).lease_expires_at or first) > first,
            timeout=10,
            interval=0.1,
            what="a renewal",
        )
        assert not held.lost
        held.check()
    assert _row(db_url, migration_id).lease_owner is None


def test_a_run_whose_lease_was_taken_over_finds_out_and_stops(
    migration_id: str, db_url: str
) -> None:
    from tests.kit.waiting import wait_for

    with lease.held(migration_id, "run-1", db_url=db_url) as held:
        _expire(db_url, migration_id)
        assert lease.take(migration_id, "run-2", db_url=db_url)
        wait_for(lambda: held.lost, timeout=10, interval=0.1, what="the loss to be noticed")
        with pytest.raises(LeaseLostError, match="run-1 does not hold its lease"):
            held.check()
    assert _row(db_url, migration_id).lease_owner == "run-2"  # the loser released nothing


def test_a_second_run_waits_for_the_first_to_let_go_then_gives_up(
    migration_id: str, db_url: str
) -> None:
    import threading

    # run-1 is alive and renewing: run-2 waits one TTL for it, then refuses to work.
    with (
        lease.held(migration_id, "run-1", db_url=db_url),
        pytest.raises(LeaseLostError, match="run-2 does not hold its lease"),
    ):
        lease.HeldLease(migration_id, "run-2", db_url).start()
    # A hand-over: run-1 lets go while run-2 waits (the run that suspends as the next starts).
    first = lease.HeldLease(migration_id, "run-1", db_url).start()
    threading.Timer(0.5, first.stop).start()
    with lease.held(migration_id, "run-2", db_url=db_url):
        assert _row(db_url, migration_id).lease_owner == "run-2"


def _unfinished(db_url: str, migration_id: str) -> UnfinishedMigration:
    (mig,) = [m for m in unfinished_migrations(db_url=db_url) if m.id == migration_id]
    return mig


@pytest.mark.parametrize(
    ("lease_state", "state", "age_s", "orphaned"),
    [
        ("live", "RUNNING", 600, False),  # alive, on whichever host
        ("expired", "RUNNING", 600, True),  # stopped renewing: its process is gone
        ("expired", "PENDING", 600, True),
        ("expired", "CANCELLING", 600, True),
        ("none", "RUNNING", 5, False),  # just started, before its first renewal
        ("none", "RUNNING", 600, True),  # never took it: died before it began
        # Past one TTL but never held it: a process still starting on a loaded host.
        ("none", "PENDING", 45, False),
        ("none", "RUNNING", 45, False),
        ("expired", "RUNNING", 45, True),  # held it, then stopped renewing
        ("other", "RUNNING", 600, True),  # the lease belongs to an earlier run
        ("expired", "PAUSED", 600, False),  # a suspended run holds no process nor lease
        ("expired", "SCHEDULED", 600, False),
        ("expired", "CRASHED", 600, False),  # Prefect knows already; recovery acts on it
    ],
)
def test_when_recovery_calls_a_run_dead(
    migration_id: str, db_url: str, lease_state: str, state: str, age_s: int, orphaned: bool
) -> None:
    with session_scope(db_url) as s:
        mig = s.get(Migration, migration_id)
        assert mig is not None
        mig.flow_run_id = "run-1"
        if lease_state != "none":
            mig.lease_owner = "run-0" if lease_state == "other" else "run-1"
            ahead = timedelta(seconds=20 if lease_state in ("live", "other") else -1)
            mig.lease_expires_at = utcnow() + ahead
    since = utcnow() - timedelta(seconds=age_s)
    found = run_is_orphaned(_unfinished(db_url, migration_id), state, since, ttl=TTL)
    assert found is orphaned
