"""The migration state machine: every (state, move) pair on a real share row."""

from __future__ import annotations

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from storage import migration_state as state
from storage.errors import InvalidInputError
from storage.migration_state import TaskState
from storage.models import Share
from storage.shares import create_share

S = TaskState
ALL_STATES: list[TaskState | None] = [None, *TaskState]

# The moves a migration makes, written out by hand from contract §9.3 plus sharemig's own
# (re-plan after a crash, switchover back to waiting, cancel in every phase-1 state), so the
# table below is checked against a second statement of the machine, not against itself.
PHASE1 = [
    S.STARTING,
    S.IN_PROGRESS,
    S.DRIVER_STARTING,
    S.DRIVER_IN_PROGRESS,
    S.COPY_STARTING,
    S.COPY_IN_PROGRESS,
    S.COPY_COMPLETING,
    S.DRIVER_PHASE1_DONE,
    S.COPY_COMPLETED,
]
IDLE = [None, S.SUCCESS, S.ERROR, S.CANCELLED, S.COPY_CANCELLED, S.COPY_ERROR]
IDLE += [S.CANCEL_IN_PROGRESS]
EXPECTED: set[tuple[TaskState | None, TaskState]] = {
    *((s, t) for s in IDLE for t in (S.STARTING, S.SUCCESS)),
    (S.STARTING, S.IN_PROGRESS),
    (S.IN_PROGRESS, S.DRIVER_STARTING),
    (S.IN_PROGRESS, S.COPY_STARTING),
    (S.DRIVER_STARTING, S.DRIVER_IN_PROGRESS),
    (S.DRIVER_IN_PROGRESS, S.DRIVER_PHASE1_DONE),
    *(
        (s, t)
        for s in (S.COPY_STARTING, S.COPY_IN_PROGRESS, S.COPY_COMPLETING)
        for t in (S.COPY_STARTING, S.COPY_IN_PROGRESS, S.COPY_CANCELLED, S.COPY_ERROR)
    ),
    (S.COPY_IN_PROGRESS, S.COPY_COMPLETING),
    (S.COPY_COMPLETING, S.COPY_COMPLETED),
    (S.COPY_COMPLETED, S.COMPLETING),
    (S.DRIVER_PHASE1_DONE, S.COMPLETING),
    (S.COMPLETING, S.SUCCESS),
    (S.COMPLETING, S.COPY_COMPLETED),
    (S.COMPLETING, S.DRIVER_PHASE1_DONE),
    (S.COPY_CANCELLED, S.CANCELLED),
    (S.COPY_ERROR, S.ERROR),
    *((s, t) for s in PHASE1 for t in (S.ERROR, S.CANCELLED)),
}


@pytest.fixture
def share(session: Session) -> Share:
    made = create_share(session, project_id="p1", size=1)
    session.commit()
    return made


@pytest.mark.parametrize("current", ALL_STATES, ids=lambda v: "null" if v is None else str(v))
def test_every_move(session: Session, share: Share, current: TaskState | None) -> None:
    """Every target from `current`, on the same row (one database per source state: a fresh
    one per pair cost 272 schema upgrades). Each wrong pair is listed, not only the first."""
    wrong = []
    for target in TaskState:
        share.task_state = current.value if current else None
        session.commit()
        legal = current == target or (current, target) in EXPECTED
        try:
            state.move(share, target)
        except state.IllegalTransitionError as err:
            moved = False
            named = f"{current.value if current else 'null'} -> {target.value}" in str(err)
        else:
            moved, named = True, True
        session.commit()
        session.refresh(share)
        stored = share.task_state
        expected = target.value if legal else (current.value if current else None)
        if moved != legal or not named or stored != expected:
            wrong.append((target.value, f"moved={moved}", f"named={named}", f"stored={stored}"))
    assert wrong == []


def test_compare_and_set_follows_the_same_table(session: Session, share: Share) -> None:
    """`move_where` (the API's conditional UPDATE) admits exactly the legal sources; a share
    already in the target state loses (the second of two racing starts)."""
    admitted = []
    for current in ALL_STATES:
        share.task_state = current.value if current else None
        session.commit()
        moved = session.execute(
            update(Share)
            .where(Share.id == share.id, state.move_where(S.STARTING))
            .values(task_state=S.STARTING.value)
            .execution_options(synchronize_session=False)
        )
        session.commit()
        if moved.rowcount == 1:  # type: ignore[attr-defined]
            admitted.append(current)
    assert admitted == [s for s in ALL_STATES if s in IDLE]


def test_derived_sets() -> None:
    assert S.COMPLETING not in state.CANCELLABLE
    assert set(PHASE1) == set(state.CANCELLABLE)
    assert state.CANCELLABLE <= state.BUSY
    assert {S.COPY_COMPLETED, S.DRIVER_PHASE1_DONE} == state.PHASE1_DONE
    assert not state.TERMINAL & state.BUSY
    assert S.DRIVER_STARTING not in state.RESETTABLE
    assert S.CANCEL_IN_PROGRESS not in state.RESETTABLE


def test_reset_jumps_but_only_to_known_values(session: Session, share: Share) -> None:
    share.task_state = S.COPY_IN_PROGRESS.value
    state.reset(share, S.SUCCESS.value)  # not a move of the machine: the admin may jump
    assert share.task_state == S.SUCCESS.value
    state.reset(share, None)
    assert share.task_state is None
    for bad in ("migration_driver_starting", "copying", "MIGRATION_SUCCESS"):
        with pytest.raises(InvalidInputError, match="Invalid task_state"):
            state.reset(share, bad)
    assert share.task_state is None


def test_unknown_stored_state_is_refused(session: Session, share: Share) -> None:
    share.task_state = "something_else"
    with pytest.raises(InvalidInputError, match="not a task_state"):
        state.move(share, S.STARTING)
