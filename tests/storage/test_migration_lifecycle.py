"""The lifecycle steps the flows call, on a real database and real pool directories, without
Prefect: each is idempotent, moves the share only along the state machine, and refuses once
the migration has ended."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session

from storage import migration_endings as endings
from storage import migration_lifecycle as life
from storage.db import session_scope
from storage.errors import CapacityError, InvalidStateError, PermanentError
from storage.migration_admission import StartRequest, admit_start
from storage.migration_state import IllegalTransitionError, TaskState
from storage.models import Migration, Pool, ShareInstance
from storage.shares import create_share

S = TaskState
POOL_A, POOL_B = "h1@lfs#a", "h1@lfs#b"


def _admitted(db_url: str, *, size: int = 1, **flags: Any) -> str:
    """A share on pool a with a migration to pool b admitted (`migration_starting`)."""
    with session_scope(db_url) as s:
        share = create_share(s, project_id="p1", size=size, host=POOL_A)
        req = StartRequest(
            **{
                "host": POOL_B,
                "preserve_metadata": False,
                "preserve_snapshots": False,
                "writable": False,
                "nondisruptive": False,
                **flags,
            }
        )
        mig = admit_start(s, share.id, req, project_id=None)
        assert mig is not None
        return mig.id


def _task_state(db_url: str, migration_id: str) -> str | None:
    return life.status(migration_id, db_url=db_url).task_state


def test_begin_records_the_run_and_moves_on_unless_queued(db_url: str, session: Session) -> None:
    queued, running = _admitted(db_url), _admitted(db_url)
    status = life.begin(queued, "run-q", advance=False, db_url=db_url)
    assert (status.flow_run_id, status.task_state) == ("run-q", S.STARTING)
    life.advance_start(queued, db_url=db_url)
    assert _task_state(db_url, queued) == S.IN_PROGRESS
    assert life.begin(running, "run-1", db_url=db_url).task_state == S.IN_PROGRESS
    # A second begin (a retried task) changes nothing; an advance past starting neither.
    assert life.begin(running, "run-1", db_url=db_url).task_state == S.IN_PROGRESS
    life.advance_start(running, db_url=db_url)
    assert _task_state(db_url, running) == S.IN_PROGRESS


def test_an_ended_migration_takes_no_run_and_no_move(db_url: str, session: Session) -> None:
    mig = _admitted(db_url)
    endings.abort(mig, S.CANCELLED, "cancelled before its run began", db_url=db_url)
    status = life.begin(mig, "late-run", db_url=db_url)
    assert (status.flow_run_id, status.task_state, status.outcome) == (
        None,
        S.CANCELLED,
        S.CANCELLED,
    )
    life.record_flow_run(mig, "late-run", db_url=db_url)
    assert life.status(mig, db_url=db_url).flow_run_id is None
    with pytest.raises(InvalidStateError, match="already ended"):
        life.set_task_state(mig, S.IN_PROGRESS, db_url=db_url)


def test_set_task_state_follows_the_machine(db_url: str, session: Session) -> None:
    mig = _admitted(db_url)
    with pytest.raises(IllegalTransitionError, match="migration_starting -> data_copying"):
        life.set_task_state(mig, S.COPY_IN_PROGRESS, db_url=db_url)
    for target in (S.IN_PROGRESS, S.COPY_STARTING, S.COPY_IN_PROGRESS):
        life.set_task_state(mig, target, db_url=db_url)
        assert _task_state(db_url, mig) == target


def test_reserve_destination_makes_one_instance(db_url: str, session: Session) -> None:
    mig = _admitted(db_url)
    first = life.reserve_destination(mig, db_url=db_url)
    assert life.reserve_destination(mig, db_url=db_url) == first  # a retry: the same one
    with session_scope(db_url) as s:
        inst = s.get(ShareInstance, first)
        assert inst is not None and (inst.pool_name, inst.status) == (POOL_B, "migrating_to")


def test_reserve_destination_refuses_a_pool_that_no_longer_fits(
    db_url: str, session: Session
) -> None:
    full, gone = _admitted(db_url, size=5), _admitted(db_url)
    with session_scope(db_url) as s:
        pool = s.get(Pool, POOL_B)
        assert pool is not None
        pool.capacity_gb = 5  # shrunk under the admitted migrations (inventory edit)
    with pytest.raises(CapacityError, match=f"pool {POOL_B} cannot take share"):
        life.reserve_destination(full, db_url=db_url)
    with session_scope(db_url) as s:
        row = s.get(Migration, gone)
        assert row is not None
        row.dest_host = "h1@lfs#gone"
    with pytest.raises(PermanentError, match="not a pool in the inventory"):
        life.reserve_destination(gone, db_url=db_url)


@pytest.mark.parametrize(
    ("flags", "mechanism"),
    [({}, "driver"), ({"force_host_assisted_migration": True}, "host")],
)
def test_choose_path_is_decided_once(
    db_url: str, session: Session, flags: dict[str, bool], mechanism: str
) -> None:
    mig = _admitted(db_url, **flags)
    life.reserve_destination(mig, db_url=db_url)
    assert life.choose_path(mig, db_url=db_url) == mechanism
    with session_scope(db_url) as s:
        row = s.get(Migration, mig)
        assert row is not None
        row.force_host_assisted = mechanism == "driver"  # the stored choice wins over the flags
    assert life.choose_path(mig, db_url=db_url) == mechanism


def test_record_progress_never_goes_back(db_url: str, session: Session) -> None:
    mig = _admitted(db_url)
    readings = []
    for verified, files in ((0, 0), (1 << 29, 5), (1 << 28, 2), (1 << 30, 10)):
        life.record_progress(
            mig,
            files_planned=10,
            bytes_planned=1 << 30,
            files_verified=files,
            bytes_verified=verified,
            db_url=db_url,
        )
        status = life.status(mig, db_url=db_url)
        readings.append((status.files_verified, status.percent))
    # A re-plan's lower counters do not move the numbers back; all verified but phase 1 not
    # done yet (the finish may still find open entries) reads 99.
    assert readings == [(0, 0), (5, 50), (5, 50), (10, 99)]


def test_take_decision_first_request_wins(db_url: str, session: Session) -> None:
    approved, rejected = _admitted(db_url), _admitted(db_url)
    for mig in (approved, rejected):
        for target in (S.IN_PROGRESS, S.COPY_STARTING, S.COPY_IN_PROGRESS):
            life.set_task_state(mig, target, db_url=db_url)
        life.set_task_state(mig, S.COPY_COMPLETING, db_url=db_url)
        life.set_task_state(mig, S.COPY_COMPLETED, db_url=db_url)
    assert life.take_decision(approved, True, "looks good", db_url=db_url) == "complete"
    assert _task_state(db_url, approved) == S.COMPLETING
    assert life.take_decision(approved, False, "too late", db_url=db_url) == "complete"
    assert life.approval_reason(approved, db_url=db_url) == "looks good"
    assert life.take_decision(rejected, False, "wrong pool", db_url=db_url) == "cancel"
    assert life.pending_request(rejected, db_url=db_url) == "cancel"
    assert _task_state(db_url, rejected) == S.COPY_COMPLETED  # the run aborts it, not this


def test_a_recorded_cancel_reaches_the_copy(db_url: str, session: Session) -> None:
    mig = _admitted(db_url)
    assert not life.stop_requested(mig, db_url=db_url)()
    with session_scope(db_url) as s:
        row = s.get(Migration, mig)
        assert row is not None
        row.requested_action = "cancel"
    assert life.stop_requested(mig, db_url=db_url)()
