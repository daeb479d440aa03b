"""The one migration state machine: Manila's task_state vocabulary, its moves, derived sets.

Every writer of a share's `task_state` goes through `move` (or `move_where` for a
compare-and-set UPDATE), so an illegal move fails loudly with the move named instead of
leaving a share in a state no code path expects. Only the admin repair (`reset`) may jump.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from sqlalchemy import ColumnElement, or_

from storage.errors import InvalidInputError, InvalidStateError
from storage.models import Share


class TaskState(StrEnum):
    """Manila's share `task_state` values (contract §9.1)."""

    STARTING = "migration_starting"
    IN_PROGRESS = "migration_in_progress"
    DRIVER_STARTING = "migration_driver_starting"
    DRIVER_IN_PROGRESS = "migration_driver_in_progress"
    DRIVER_PHASE1_DONE = "migration_driver_phase1_done"
    COPY_STARTING = "data_copying_starting"
    COPY_IN_PROGRESS = "data_copying_in_progress"
    COPY_COMPLETING = "data_copying_completing"
    COPY_COMPLETED = "data_copying_completed"
    COPY_CANCELLED = "data_copying_cancelled"
    COPY_ERROR = "data_copying_error"
    COMPLETING = "migration_completing"
    SUCCESS = "migration_success"
    ERROR = "migration_error"
    CANCELLED = "migration_cancelled"
    CANCEL_IN_PROGRESS = "migration_cancel_in_progress"


S = TaskState
State = TaskState | None

TERMINAL: frozenset[TaskState] = frozenset({S.SUCCESS, S.ERROR, S.CANCELLED})
PHASE1_DONE: frozenset[TaskState] = frozenset({S.COPY_COMPLETED, S.DRIVER_PHASE1_DONE})
# Contract §9.1's busy set: blocks a new start and most other share operations.
BUSY: frozenset[TaskState] = frozenset(
    {
        S.STARTING,
        S.IN_PROGRESS,
        S.COMPLETING,
        S.DRIVER_STARTING,
        S.DRIVER_IN_PROGRESS,
        S.DRIVER_PHASE1_DONE,
        S.COPY_STARTING,
        S.COPY_IN_PROGRESS,
        S.COPY_COMPLETING,
        S.COPY_COMPLETED,
    }
)
# Progress is 0 here: nothing has been planned yet.
STARTING: frozenset[TaskState] = frozenset(
    {S.STARTING, S.IN_PROGRESS, S.DRIVER_STARTING, S.COPY_STARTING}
)
COPYING: frozenset[TaskState] = frozenset({S.COPY_IN_PROGRESS, S.DRIVER_IN_PROGRESS})
# Contract §9.1: reset_task_state takes every value except these two (and null).
RESETTABLE: frozenset[TaskState] = frozenset(TaskState) - {S.DRIVER_STARTING, S.CANCEL_IN_PROGRESS}

# A share not busy with a migration can start one (the 202), or get the same-host no-op (200).
_IDLE: tuple[State, ...] = (None, *(s for s in TaskState if s not in BUSY))
_PHASE1: tuple[TaskState, ...] = tuple(BUSY - PHASE1_DONE - {S.COMPLETING})
_COPY_RUNNING = (S.COPY_STARTING, S.COPY_IN_PROGRESS, S.COPY_COMPLETING)


def _edges() -> dict[State, set[TaskState]]:
    edges: dict[State, set[TaskState]] = {}

    def allow(sources: Iterable[State], *targets: TaskState) -> None:
        for source in sources:
            edges.setdefault(source, set()).update(targets)

    allow(_IDLE, S.STARTING, S.SUCCESS)
    allow([S.STARTING], S.IN_PROGRESS)
    allow([S.IN_PROGRESS], S.DRIVER_STARTING, S.COPY_STARTING)
    allow([S.DRIVER_STARTING], S.DRIVER_IN_PROGRESS)
    allow([S.DRIVER_IN_PROGRESS], S.DRIVER_PHASE1_DONE)
    # A resumed run plans again from wherever the copy stopped; a re-copy round after the
    # finish found entries still open goes back to copying.
    allow(_COPY_RUNNING, S.COPY_STARTING, S.COPY_IN_PROGRESS, S.COPY_CANCELLED, S.COPY_ERROR)
    allow([S.COPY_IN_PROGRESS], S.COPY_COMPLETING)
    allow([S.COPY_COMPLETING], S.COPY_COMPLETED)
    allow(PHASE1_DONE, S.COMPLETING)
    # The switchover ends in success, or (retries spent) goes back to waiting for approval.
    allow([S.COMPLETING], S.SUCCESS, S.COPY_COMPLETED, S.DRIVER_PHASE1_DONE)
    allow([S.COPY_CANCELLED], S.CANCELLED)
    allow([S.COPY_ERROR], S.ERROR)
    # Any failure or cancel before the switchover ends the migration (cancel is accepted in
    # every phase-1 state here: contract §14.1).
    allow([*_PHASE1, *PHASE1_DONE], S.ERROR, S.CANCELLED)
    return edges


TRANSITIONS: Mapping[State, frozenset[TaskState]] = {
    source: frozenset(targets) for source, targets in _edges().items()
}
CANCELLABLE: frozenset[TaskState] = frozenset(
    s for s in BUSY if S.CANCELLED in TRANSITIONS.get(s, ())
)


class IllegalTransitionError(InvalidStateError):
    """A task_state move the state machine does not allow."""


def parse(value: str | None) -> State:
    """The `TaskState` of a stored or requested value; unknown names are refused."""
    if value is None:
        return None
    try:
        return TaskState(value)
    except ValueError:
        raise InvalidInputError(f"{value!r} is not a task_state") from None


def allowed(current: str | None, target: TaskState) -> bool:
    """True when `current -> target` is a move of the machine (staying put is always fine)."""
    state = parse(current)
    return state == target or target in TRANSITIONS.get(state, frozenset())


def check(current: str | None, target: TaskState) -> None:
    if not allowed(current, target):
        raise IllegalTransitionError(
            f"task_state {current or 'null'} -> {target.value} is not a move of the migration "
            "state machine"
        )


def move(share: Share, target: TaskState) -> None:
    """Change `share.task_state` to `target`, or raise (and leave it) if the move is illegal."""
    check(share.task_state, target)
    if share.task_state != target.value:
        share.task_state = target.value


def sources_of(target: TaskState) -> frozenset[State]:
    """Every state a share may move to `target` from (itself included)."""
    return frozenset({target, *(s for s, ts in TRANSITIONS.items() if target in ts)})


def move_where(target: TaskState, among: Iterable[State] | None = None) -> ColumnElement[bool]:
    """The WHERE clause of a compare-and-set UPDATE to `target`: the share is in one of the
    states `target` is reachable from, never `target` itself (a second request racing the
    first must lose), optionally narrowed to `among`."""
    sources = sources_of(target) - {target}
    if among is not None:
        sources &= set(among)
    names = [s.value for s in sources if s is not None]
    clause = Share.task_state.in_(names)
    return or_(clause, Share.task_state.is_(None)) if None in sources else clause


def reset(share: Share, value: str | None) -> None:
    """The admin repair (`reset_task_state`): jump to any resettable value, or null."""
    if value is not None and value not in RESETTABLE:
        names = ", ".join(sorted(s.value for s in RESETTABLE))
        raise InvalidInputError(f"Invalid task_state {value!r}; use null or one of: {names}.")
    share.task_state = value
