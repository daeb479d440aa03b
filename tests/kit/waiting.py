"""Waiting on a condition, and on a share's task_state with one rule for failing early."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

# A host-assisted migration's task states in the order it passes them, then its ends.
ORDER = (
    "migration_starting",
    "migration_in_progress",
    "data_copying_starting",
    "data_copying_in_progress",
    "data_copying_completing",
    "data_copying_completed",
    "migration_completing",
)
ENDS = ("migration_success", "migration_error", "migration_cancelled")


def wait_for(
    condition: Callable[[], Any], *, timeout: float, interval: float = 0.2, what: object = ""
) -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds.

    A condition raises AssertionError when what it waits for can no longer come (the
    migration failed, the run ended, the state went past): that fails the wait at once
    instead of at the timeout. Other exceptions (a server restarting) are polled through.
    `what` is rendered only on timeout, so it may describe what was seen meanwhile.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except AssertionError:
            raise
        except Exception as exc:  # keep polling; report the last problem on timeout
            last_exc = exc
        else:
            if value:
                return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}: {last_exc}")


def task_state_of(share: Any) -> str | None:
    """The task_state of a share as any layer shows it: a row or JSON dict, or a client object."""
    value = share["task_state"] if isinstance(share, Mapping) else share.task_state
    return None if value is None else str(value)


def later_than(*states: str) -> tuple[str, ...]:
    """The steps of ORDER after every one of `states`: a `fail_on` for a wait that must see
    a step (a kill lands in it) and fails once the migration is past it. Not for waits across
    a switchover that gives up: that goes back from migration_completing to waiting."""
    ranks = [ORDER.index(s) for s in states if s in ORDER]
    return ORDER[max(ranks) + 1 :] if ranks else ()


def wait_task_state(
    get: Callable[[], T],
    *states: str,
    fail_on: Iterable[str] = (),
    timeout: float = 120,
    interval: float = 0.2,
) -> T:
    """Poll `get()` (a share: DB row, API JSON or client object) until its task_state is one
    of `states`; returns that share.

    The one rule for failing early: as soon as the migration reaches an end (success, error,
    cancelled) that is not wanted, or a state of `fail_on`, the wait fails naming that state,
    the states it went through and the share's details.
    """
    fail_on = tuple(fail_on)
    seen: list[str | None] = []

    def reached() -> T | None:
        share = get()
        state = task_state_of(share)
        if not seen or seen[-1] != state:
            seen.append(state)
        if state not in states and (state in ENDS or state in fail_on):
            raise AssertionError(
                f"waiting for task_state in {states}, the migration reached {state} "
                f"(went {' -> '.join(map(str, seen))}); share: {share!r}"
            )
        return share if state in states else None

    class _What:
        def __str__(self) -> str:
            return f"task_state in {states} (went {' -> '.join(map(str, seen))})"

    return wait_for(reached, timeout=timeout, interval=interval, what=_What())  # type: ignore[no-any-return]
