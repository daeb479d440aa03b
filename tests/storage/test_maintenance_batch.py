"""A maintenance run's batch in the database: what it re-reads when it re-enters, and when an
ending should wake it (plain storage, no Prefect)."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from storage import maintenance_batch as batch
from storage.db import session_scope
from storage.models import Migration
from storage.pool_moves import PlannedMove
from storage.shares import create_share

RUN = "11111111-1111-1111-1111-111111111111"


def _migration(session: Session, share_id: str) -> str:
    mig = Migration(share_id=share_id, source_instance_id="x", dest_host="h@lfs#b")
    session.add(mig)
    session.commit()
    return mig.id


def _end(db_url: str, migration_id: str, outcome: str) -> None:
    with session_scope(db_url) as s:
        s.execute(update(Migration).where(Migration.id == migration_id).values(outcome=outcome))


def test_batch_round_trip_and_wakes(session: Session, db_url: str) -> None:
    shares = [create_share(session, project_id="p1", size=1).id for _ in range(3)]
    session.commit()
    moves = [PlannedMove(sid, "h@lfs#a", "h@lfs#b", 1) for sid in shares]
    batch.record_plan(RUN, moves, {"s-full": "share s-full: no pool fits"}, auto_approve=True)
    assert batch.has_plan(RUN)
    got = batch.moves(RUN)
    assert [m.share_id for m in got] == [*shares, "s-full"]
    assert [m.pending for m in got] == [True, True, True, False]
    assert got[3].outcome == "share s-full: no pool fits"

    first, second = _migration(session, shares[0]), _migration(session, shares[1])
    batch.record_start(RUN, shares[0], migration_id=first)
    batch.record_start(RUN, shares[1], migration_id=second)
    assert batch.owner_of(first) == RUN and batch.auto_approved(first)
    assert batch.runs_to_wake() == []

    _end(db_url, first, "migration_success")
    assert batch.runs_to_wake() == [RUN], "a move waits to start: wake the run"
    batch.record_start(RUN, shares[2], outcome="not started: share is busy")
    assert batch.runs_to_wake() == [], "nothing to start while the second one runs"
    _end(db_url, second, "migration_cancelled")
    assert batch.runs_to_wake() == [RUN], "nothing left to wait for: wake the run to finish"

    seen = batch.moves(RUN)
    assert [m.just_ended for m in seen] == [True, True, False, False]
    assert [m.outcome for m in seen[:2]] == ["migration_success", "migration_cancelled"]
    assert batch.runs_to_wake() == [], "the run has seen every ending"
    assert not any(m.just_ended for m in batch.moves(RUN))
