"""Wake a suspended maintenance run when one of its migrations ended.

The migration's own run calls `wake_owner` as it finishes; the recovery pass of `sharemig up`
calls `wake_waiting` as the backstop (an ending the run could not report: its process died,
Prefect did not answer, a cancel that ended the migration without a run).
"""

from __future__ import annotations

import logging
import time
from typing import Any
from uuid import UUID

from flows.prefect_calls import call_prefect
from storage import maintenance_batch as batch

log = logging.getLogger(__name__)

# How long a wake waits for a run that is still running, about to suspend (it read the batch
# before this migration ended). A run that saw the ending needs no wake.
WAKE_WAIT_S = 20.0
WAKE_POLL_S = 0.3


def _due(run_id: str) -> bool:
    return run_id in batch.runs_to_wake()


def wake(run_id: str, *, wait_s: float = WAKE_WAIT_S) -> bool:
    """Resume maintenance run `run_id` if an ending it has not seen gives it work; True if
    this call resumed it."""
    deadline = time.monotonic() + wait_s
    while _due(run_id):
        run: Any = call_prefect("read the maintenance run", lambda c: c.read_flow_run(UUID(run_id)))
        state = run.state
        if state is None or state.is_final() or state.is_scheduled() or state.is_pending():
            return False  # ended, or already on its way back in: it reads the batch itself
        if state.is_paused():
            from prefect.client.schemas.responses import SetStateStatus

            result = call_prefect(
                "resume the maintenance run", lambda c: c.resume_flow_run(UUID(run_id))
            )
            if result.status != SetStateStatus.REJECT:
                log.info("maintenance run %s resumed: a migration of its batch ended", run_id)
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(WAKE_POLL_S)
    return False


def wake_owner(migration_id: str) -> None:
    """Wake the maintenance run that started `migration_id`, if any; never raises (the
    recovery pass wakes it later)."""
    owner = batch.owner_of(migration_id)
    if owner is None:
        return
    try:
        wake(owner)
    except Exception as exc:
        log.warning(
            "maintenance run %s not woken after migration %s ended (%s); the next recovery "
            "pass of `sharemig up` wakes it",
            owner,
            migration_id,
            exc,
        )


def wake_waiting() -> list[str]:
    """Every maintenance run an ending gives work, resumed if it waits; the ids."""
    woken = []
    for run_id in batch.runs_to_wake():
        if wake(run_id, wait_s=0):
            woken.append(run_id)
    return woken
