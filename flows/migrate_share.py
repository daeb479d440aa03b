"""`migrate_share`: phase 1 as tasks, a suspended wait for approval, then the switchover.

The wait suspends the run: its process exits and no worker slot is held. Resuming re-runs
the flow from the top, so every step before the wait is idempotent through the database:
`begin` reports what is already done and finished phases are skipped.
"""

from __future__ import annotations

import contextlib
import time
from contextlib import nullcontext
from datetime import timedelta
from typing import Any, cast

from prefect import flow, get_run_logger, runtime
from prefect.client.schemas.objects import State
from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput
from prefect.states import Cancelled, Failed

from flows.copy_phase import ProgressArtifact, copy_until_verified, publish_report
from flows.maintenance_wake import wake_owner
from flows.pool_slots import pool_slots
from flows.switchover import switchover
from storage import maintenance_batch
from storage import migration_endings as endings
from storage import migration_lifecycle as lifecycle
from storage.errors import CancelledError, InvalidStateError, LeaseLostError
from storage.migration_lease import HeldLease, held
from storage.migration_lifecycle import MigrationStatus
from storage.rollback import approved_in_advance
from storage.settings import get_settings
from tasks import migration_steps as steps

APPROVAL_KEY = "approval"
AUTO_APPROVE_REASON = "auto-approved by the maintenance run that started it"
DRIVER_POLL_S = 1.0


class Approval(RunInput):
    """The Resume form in the Prefect UI: approve the switchover, or reject (cancels)."""

    approve: bool = True
    reason: str = ""


def _stop_if_cancel_requested(migration_id: str, lease: HeldLease) -> None:
    lease.check()
    if lifecycle.pending_request(migration_id) == "cancel":
        raise CancelledError(f"migration {migration_id}: cancel requested")


def _phase1(migration_id: str, lease: HeldLease) -> str:
    """Reserve the destination, choose the mechanism, move the data. Returns the mechanism."""
    steps.reserve_destination(migration_id)
    _stop_if_cancel_requested(migration_id, lease)
    mechanism = steps.choose_mechanism(migration_id)
    _stop_if_cancel_requested(migration_id, lease)
    artifact = ProgressArtifact(migration_id, "phase 1")
    if mechanism == "driver":
        steps.driver_start(migration_id)
        while not steps.driver_continue(migration_id):
            artifact.update(lifecycle.status(migration_id))
            _stop_if_cancel_requested(migration_id, lease)
            time.sleep(DRIVER_POLL_S)
        artifact.update(lifecycle.status(migration_id))
    else:
        copy_until_verified(migration_id, final_sync=False, artifact=artifact)
        publish_report(migration_id)
    return mechanism


def _await_decision(migration_id: str, deadline_passed: bool) -> str:
    """`complete` or `cancel`: from the database if the API already asked, else the form.

    The API records its request before resuming the run, so checking the database first
    means a request that arrives before the run suspends is never lost.
    """
    requested = lifecycle.pending_request(migration_id)
    if requested:
        return requested
    if approved_in_advance(migration_id):
        return lifecycle.take_decision(migration_id, True, "rollback: approved by its command")
    if maintenance_batch.auto_approved(migration_id):
        return lifecycle.take_decision(migration_id, True, AUTO_APPROVE_REASON)
    if deadline_passed:
        timeout_s = get_settings().approval_timeout_s
        return lifecycle.take_decision(
            migration_id, False, f"nobody approved the switchover within {timeout_s} s"
        )
    settings = get_settings()
    timeout: int | None = None
    if settings.approval_timeout_action == "cancel":
        _schedule_deadline(migration_id, settings.approval_timeout_s)
        timeout = settings.approval_timeout_s
    # `keep_waiting` suspends without a timeout: Prefect fails a suspended run whose timeout
    # passed, which would take the Resume form away from the operator while the migration
    # still waits for a decision.
    answer = suspend_flow_run(wait_for_input=Approval, timeout=timeout, key=APPROVAL_KEY)
    return lifecycle.take_decision(migration_id, answer.approve, answer.reason or None)


def _schedule_deadline(migration_id: str, timeout_s: int) -> None:
    """A run of this deployment at the deadline that rejects the migration if still waiting."""
    from prefect.deployments import run_deployment
    from prefect.types._datetime import now

    cast(Any, run_deployment)(
        "migrate-share/migrate-share",
        parameters={"migration_id": migration_id, "approval_deadline_passed": True},
        scheduled_time=now("UTC") + timedelta(seconds=timeout_s),
        timeout=0,
        as_subflow=False,
        idempotency_key=f"{migration_id}:approval-deadline",
        _sync=True,
    )


def _cancelled_in_prefect(flow: Any, flow_run: Any, state: Any) -> None:
    """Hook for a run cancelled from the Prefect UI/API: clean up like an API cancel."""
    migration_id = flow_run.parameters.get("migration_id")
    if not migration_id:
        return
    # Switched over already: the run finishing (or a retry) completes it instead.
    with contextlib.suppress(InvalidStateError):
        endings.abort(migration_id, "migration_cancelled", "the flow run was cancelled in Prefect")


@flow(
    name="migrate-share",
    persist_result=False,
    on_cancellation=[cast(Any, _cancelled_in_prefect)],
)
def migrate_share(migration_id: str, approval_deadline_passed: bool = False) -> str | State:
    """Move one share to its destination pool, as recorded by `flows.control.start_migration`.

    Ends in `migration_success`, `migration_cancelled` (reject/cancel at any point before the
    switchover) or `migration_error` (source untouched, reason recorded on the migration).
    A maintenance run that started it and waits suspended is woken once it ended.
    """
    result = _migrate(migration_id, approval_deadline_passed)
    if lifecycle.status(migration_id).finished:
        wake_owner(migration_id)
    return result


def _migrate(migration_id: str, approval_deadline_passed: bool) -> str | State:
    log = get_run_logger()
    current = steps.begin(migration_id, runtime.flow_run.get_id())
    if current.finished:
        log.info("migration %s already ended: %s", migration_id, current.outcome)
        return str(current.outcome)
    if approval_deadline_passed and not current.phase1_done:
        return "not waiting for approval; nothing to do at the deadline"
    try:
        # Held while this process works; a suspend exits the block and releases it.
        with held(migration_id, str(runtime.flow_run.get_id())) as lease:
            return _work(migration_id, current, approval_deadline_passed, lease)
    except LeaseLostError as exc:
        log.error("%s", exc)  # the run that took over owns the migration: touch nothing
        return Failed(message=str(exc))
    except CancelledError:
        reason = _why_cancelled(migration_id)
        steps.abort(migration_id, "migration_cancelled", reason)
        return Cancelled(message=f"migration_cancelled: {reason}")
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}" if not str(exc).strip() else str(exc)
        log.error("migration %s failed: %s", migration_id, reason)
        try:
            steps.abort(migration_id, "migration_error", reason)
        except InvalidStateError:
            lifecycle.record_failure(migration_id, reason)
        return Failed(message=f"migration_error: {reason}")


def _work(
    migration_id: str, current: MigrationStatus, deadline_passed: bool, lease: HeldLease
) -> str:
    # The deadline run only rejects: it moves no data and needs no pool slot.
    with nullcontext() if deadline_passed else pool_slots(migration_id):
        steps.advance_start(migration_id)
        return _move_and_switch(migration_id, current, deadline_passed, lease)


def _move_and_switch(
    migration_id: str, current: MigrationStatus, deadline_passed: bool, lease: HeldLease
) -> str:
    log = get_run_logger()
    _stop_if_cancel_requested(migration_id, lease)
    mechanism = current.mechanism
    if not current.phase1_done or mechanism is None:
        mechanism = _phase1(migration_id, lease)
    log.info("migration %s: phase 1 done (%s); waiting for approval", migration_id, mechanism)
    if _await_decision(migration_id, deadline_passed) != "complete":
        raise CancelledError(f"migration {migration_id} was rejected")
    lease.check()
    failure = switchover(migration_id, mechanism)
    if failure is None:
        return "migration_success"
    return _wait_again(migration_id, failure)


def _wait_again(migration_id: str, failure: str) -> str:
    """The switchover gave up: back to waiting, in a fresh run that suspends with a fresh
    Resume form (this run's approval has been used)."""
    from flows.control import create_run

    log = get_run_logger()
    if not steps.return_to_waiting(migration_id, failure):
        raise InvalidStateError(f"migration {migration_id} cannot go back to waiting: {failure}")
    log.warning(
        "migration %s: switchover failed (%s); the source is intact and still served, the "
        "migration waits for approval again (approve to retry, or cancel)",
        migration_id,
        failure,
    )
    waiting_run = create_run(migration_id, f"wait-after-{runtime.flow_run.get_id()}")
    lifecycle.record_flow_run(migration_id, waiting_run)
    return f"switchover failed; waiting for approval again in run {waiting_run}"


def _why_cancelled(migration_id: str) -> str:
    with_reason = lifecycle.approval_reason(migration_id)
    return with_reason or "cancelled on request"
