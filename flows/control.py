"""Start / approve / reject / cancel / progress: the one place both front doors call.

The synchronous contract checks and compare-and-set moves live in
`storage.migration_admission`; this module adds what needs Prefect: creating the flow run and
delivering a decision to a run that waits for it. Storage errors propagate unchanged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from flows.prefect_calls import (
    PrefectUnavailableError,
    api_url,
    call_prefect,
    elapsed_s,
    remaining_s,
)
from storage import migration_endings as endings
from storage import migration_lifecycle as lifecycle
from storage.db import session_scope
from storage.errors import TransientError
from storage.migration_admission import (
    PHASE1_DONE_STATES,
    ProgressView,
    StartRequest,
    admit_cancel,
    admit_complete,
    admit_start,
    read_progress,
    withdraw_start,
)
from storage.shares import get_share

log = logging.getLogger(__name__)

DEPLOYMENT = "migrate-share/migrate-share"
# How long a decision waits for a run that is about to suspend (it checks the DB first, so
# this only bridges the instant between that check and the suspension).
DELIVERY_WAIT_S = 15.0

__all__ = [
    "StartOutcome",
    "StartRequest",
    "cancel_migration",
    "complete_migration",
    "create_run",
    "migration_progress",
    "reject_migration",
    "start_migration",
    "start_rollback",
]


@dataclass(frozen=True)
class StartOutcome:
    migration_id: str | None
    flow_run_id: str | None
    noop: bool


def create_run(migration_id: str, attempt: str) -> str:
    """Create a run of the migrate-share deployment without waiting for it to start.

    Within the current Prefect budget (`flows.prefect_calls`); the idempotency key makes a
    retry, here or by a caller, find the run a lost answer had created instead of a second.
    """
    from prefect.states import Scheduled

    def create(client: Any) -> str:
        deployment = client.read_deployment_by_name(DEPLOYMENT)
        run = client.create_flow_run_from_deployment(
            deployment.id,
            parameters={"migration_id": migration_id},
            state=Scheduled(),
            idempotency_key=f"{migration_id}:{attempt}",
        )
        return str(run.id)

    try:
        return call_prefect("create the migration run", create)
    except PrefectUnavailableError:
        raise
    except Exception as exc:  # no deployment (ObjectNotFound), a refused request, ...
        raise TransientError(
            f"the Prefect API at {api_url() or '(PREFECT_API_URL unset)'} could not create "
            f"the migration run ({type(exc).__name__}: {exc}); check that `sharemig up` (or "
            "`prefect server start`) is running and the migrate-share deployment is applied, "
            "then start the migration again"
        ) from exc


def start_migration(
    share_id: str, req: StartRequest, *, project_id: str | None = None
) -> StartOutcome:
    """Admit the start (contract §5.2), then create the flow run and return at once.

    Either the run exists or the start is undone: when Prefect cannot create the run within
    the budget the share goes back to what it was (status, task_state, no reservation) and
    the caller gets the `TransientError` (a 503: retry later).
    """
    with session_scope() as session:
        before = get_share(session, share_id, project_id).task_state
        migration = admit_start(session, share_id, req, project_id=project_id)
        migration_id = migration.id if migration is not None else None
    if migration_id is None:
        return StartOutcome(None, None, noop=True)
    return _create_or_withdraw(share_id, migration_id, before)


def _create_or_withdraw(share_id: str, migration_id: str, before: str | None) -> StartOutcome:
    try:
        run_id = create_run(migration_id, "start")
    except TransientError as exc:
        gave_up = elapsed_s()
        with session_scope() as session:
            undone = withdraw_start(session, migration_id, before, str(exc))
        if undone:
            log.warning(
                "start of migration %s (share %s) withdrawn %s: %s",
                migration_id,
                share_id,
                _timing(gave_up, elapsed_s()),
                exc,
            )
            raise
        # A run created by a request whose answer was lost already picked the migration up.
        log.warning("start of migration %s: %s, but its run is already working", migration_id, exc)
        return StartOutcome(migration_id, lifecycle.status(migration_id).flow_run_id, noop=False)
    lifecycle.record_flow_run(migration_id, run_id)
    return StartOutcome(migration_id, run_id, noop=False)


def start_rollback(share_id: str, *, project_id: str | None = None) -> StartOutcome:
    """Admit a rollback (`storage.rollback`: refused with the reason, nothing changed, when
    it cannot run), then create its migrate-share run; undone like a start when Prefect
    cannot create the run."""
    from storage.rollback import admit_rollback

    with session_scope() as session:
        before = get_share(session, share_id, project_id).task_state
        migration_id = admit_rollback(session, share_id, project_id=project_id).id
    return _create_or_withdraw(share_id, migration_id, before)


def _timing(gave_up: float | None, done: float | None) -> str:
    if gave_up is None or done is None:
        return "(outside a request)"
    return f"{done:.2f} s after the request arrived (Prefect given up at {gave_up:.2f} s)"


def _read_run(run_id: str) -> Any:
    return call_prefect("read the migration's flow run", lambda c: c.read_flow_run(UUID(run_id)))


def _resume(run_id: str, approve: bool, reason: str) -> None:
    """Resume a paused run with the decision; raises when Prefect refuses (it moved on)."""
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.responses import SetStateStatus

    result = call_prefect(
        "resume the waiting flow run",
        lambda c: c.resume_flow_run(UUID(run_id), run_input={"approve": approve, "reason": reason}),
    )
    if result.status == SetStateStatus.REJECT:
        failed = result.state is not None and result.state.type == StateType.FAILED
        raise RuntimeError("the run can no longer be resumed" if failed else str(result.details))


def _deliver(migration_id: str, approve: bool, reason: str) -> None:
    """Get the decision (already in the DB) to the run, whatever state it is in."""
    run_id = lifecycle.status(migration_id).flow_run_id
    if run_id is None:
        if not approve:
            endings.abort(migration_id, "migration_cancelled", reason)
        return
    # Within the request's Prefect budget too: past it the decision waits in the database.
    left = remaining_s()
    deadline = time.monotonic() + (DELIVERY_WAIT_S if left is None else min(DELIVERY_WAIT_S, left))
    while True:
        run = _read_run(run_id)
        state = run.state
        if state is not None and state.is_paused():
            try:
                _resume(run_id, approve, reason)
                return
            except PrefectUnavailableError:
                raise
            except Exception as exc:  # the run moved on between read and resume
                log.info("resume of run %s refused (%s); re-reading", run_id, exc)
        elif state is None or state.is_final() or (state.is_scheduled() and not approve):
            _finish_without_run(migration_id, run_id, approve, reason, state)
            return
        elif _resumed_before(run):
            return  # resumed before: the running flow reads the decision from the DB
        if time.monotonic() > deadline:
            return  # still running before its wait: it finds the decision in the DB
        time.sleep(0.3)


def _resumed_before(run: Any) -> bool:
    """The run suspended for approval once and was resumed: it is past its wait."""
    from flows.migrate_share import APPROVAL_KEY

    return APPROVAL_KEY in (getattr(run.empirical_policy, "pause_keys", None) or set())


def _finish_without_run(
    migration_id: str, run_id: str, approve: bool, reason: str, state: Any
) -> None:
    """No live run: a cancel cleans up here; an approval starts a run that re-enters.

    A run that ended because it already acted on the decision (it read it from the database
    before suspending) leaves a finished migration: then there is nothing left to do.
    """
    if lifecycle.status(migration_id).finished:
        return
    if not approve:
        if state is not None and state.is_scheduled():
            from prefect.states import Cancelled

            call_prefect(
                "cancel the scheduled flow run",
                lambda c: c.set_flow_run_state(UUID(run_id), Cancelled(message=reason), force=True),
            )
        endings.abort(migration_id, "migration_cancelled", reason)
        return
    new_run = create_run(migration_id, f"resume-{run_id}")
    lifecycle.record_flow_run(migration_id, new_run)


def complete_migration(
    share_id: str, *, project_id: str | None = None, reason: str | None = None
) -> None:
    """Admit `migration_complete`, then resume the waiting run with `approve=True`.

    Once admitted the decision is in the database: if Prefect does not answer within the
    budget it is still carried out (the run reads it, or the recovery pass delivers it to a
    run waiting for it), so the request is accepted all the same.
    """
    with session_scope() as session:
        migration_id = admit_complete(session, share_id, project_id=project_id).id
    why = reason or "approved through the API"
    lifecycle.note_reason(migration_id, why)
    with _delivered_later(migration_id):
        _deliver(migration_id, True, why)


def cancel_migration(
    share_id: str, *, project_id: str | None = None, reason: str | None = None
) -> None:
    """Admit `migration_cancel`; a waiting run is resumed with `approve=False`, a copying one
    stops at its next file boundary; either way cleanup ends in `migration_cancelled`.
    Like a completion, an admitted cancel holds even when Prefect does not answer."""
    with session_scope() as session:
        migration = admit_cancel(session, share_id, project_id=project_id)
        migration_id, task_state = migration.id, _task_state(session, share_id)
    why = reason or "cancelled through the API"
    lifecycle.note_reason(migration_id, why)
    with _delivered_later(migration_id):
        if task_state in PHASE1_DONE_STATES:
            _deliver(migration_id, False, why)
            return
        run_id = lifecycle.status(migration_id).flow_run_id
        run = _read_run(run_id) if run_id else None
        if run is None or run.state is None or run.state.is_final() or run.state.is_scheduled():
            _finish_without_run(migration_id, str(run_id), False, why, run.state if run else None)


def deliver_decision(migration_id: str) -> None:
    """Deliver a recorded complete/cancel to the run (the recovery pass calls it for runs
    that wait while a decision sits in the database)."""
    status = lifecycle.status(migration_id)
    if status.requested_action not in ("complete", "cancel") or status.finished:
        return
    approve = status.requested_action == "complete"
    fallback = "approved" if approve else "cancelled"
    _deliver(migration_id, approve, lifecycle.approval_reason(migration_id) or fallback)


@contextmanager
def _delivered_later(migration_id: str) -> Iterator[None]:
    try:
        yield
    except PrefectUnavailableError as exc:
        log.warning(
            "migration %s: decision recorded, not yet delivered to its run (%s); the run or "
            "the next recovery pass of `sharemig up` carries it out",
            migration_id,
            exc,
        )


def _task_state(session: Any, share_id: str) -> str | None:
    return get_share(session, share_id).task_state


def reject_migration(share_id: str, reason: str, *, project_id: str | None = None) -> None:
    """An operator's reject (CLI): the same end as a cancel, with the reason recorded."""
    cancel_migration(share_id, project_id=project_id, reason=f"rejected: {reason}")


def migration_progress(share_id: str, *, project_id: str | None = None) -> ProgressView:
    with session_scope() as session:
        return read_progress(session, share_id, project_id=project_id)
