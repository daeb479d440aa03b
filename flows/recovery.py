"""Reconcile migrations with their flow runs after a crash: resume, cancel, or leave alone.

Prefect marks a run `Crashed` when its process dies under a live worker, but not when the
worker dies with it, and it runs no hook when a suspended run is cancelled from the UI. Any
of these would leave a share in `migrating` with nobody working on it. `recover_migrations`
finds such migrations from the database (`storage.migration_recovery` decides what to do)
and either starts a new run, which re-enters the flow and skips finished work through the
manifest and the migration row, or aborts the migration with the source intact.

Call it when the orchestration starts and every so often (`sharemig up` does both), on any
host: liveness is the migration's lease in the database (`storage.migration_lease`), so a
live run on another host, or one that outlived its worker, is never taken for a corpse.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from flows.control import create_run, deliver_decision
from flows.maintenance_wake import wake_waiting
from storage import migration_endings as endings
from storage import migration_lifecycle as lifecycle
from storage.errors import InvalidStateError
from storage.manifest_retention import prune_ended_manifests
from storage.migration_freeze import lift_stale_freezes
from storage.migration_lease import HeldLease, lease_ttl
from storage.migration_recovery import (
    RUN_CREATION_GRACE,
    UnfinishedMigration,
    recovery_action,
    run_is_orphaned,
    unfinished_migrations,
)
from storage.retention import expire_retained

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recovered:
    migration_id: str
    share_id: str
    run_state: str | None
    action: str
    new_flow_run_id: str | None = None


def _run_state(client: Any, run_id: str | None) -> tuple[str | None, datetime | None]:
    """The run's Prefect state type and since when; (None, None) when there is no run."""
    from prefect.exceptions import ObjectNotFound

    if run_id is None:
        return None, None
    try:
        run = client.read_flow_run(UUID(run_id))
    except ObjectNotFound:
        return None, None
    if run.state is None:
        return None, None
    return str(run.state.type.value), run.state.timestamp


def _mark_crashed(client: Any, run_id: str) -> None:
    from prefect.states import Crashed

    client.set_flow_run_state(
        UUID(run_id),
        Crashed(
            message="its process stopped renewing the migration's lease; sharemig recovered it"
        ),
        force=True,
    )


def _apply(mig: UnfinishedMigration, state: str | None, grace: timedelta) -> Recovered:
    action = recovery_action(mig, state, grace=grace)
    new_run = None
    if action == "cancel":
        reason = (
            "the flow run was cancelled in Prefect"
            if state == "CANCELLED"
            else "cancelled on request; its flow run had stopped"
        )
        try:
            endings.abort(mig.id, "migration_cancelled", reason)
        except InvalidStateError:  # switched over already: only forward is left
            action = "resume"
    if action == "deliver":
        deliver_decision(mig.id)
    if action == "resume":
        # One recovery run per dead run, however often or concurrently this is called. With
        # no run recorded, the start's own key: a run the starter created just before it
        # died is found again instead of a second one racing it.
        attempt = f"recover-{mig.flow_run_id}" if mig.flow_run_id else "start"
        new_run = create_run(mig.id, attempt)
        lifecycle.record_flow_run(mig.id, new_run)
    if action != "leave":
        log.warning("migration %s (run state %s): %s", mig.id, state, action)
    return Recovered(mig.id, mig.share_id, state, action, new_run)


def recover_migrations(*, run_creation_grace: timedelta = RUN_CREATION_GRACE) -> list[Recovered]:
    """Resume or cancel every unfinished migration whose run is gone; returns what was done.

    Safe on any host, and beside another `up`'s pass: a run counts as gone when Prefect says
    it ended, or says it runs while its lease in the database has expired. A pass acts on a
    migration only while it holds that migration's lease itself (`claimed`), so two passes
    never both act on one; creating the new run is idempotent per dead run besides.
    `run_creation_grace`: how long a migration admitted without a run is given before its run
    counts as lost.
    """
    from prefect import get_client

    done: list[Recovered] = []
    ttl = lease_ttl()
    for mig in unfinished_migrations():
        with get_client(sync_client=True) as client:
            state, since = _run_state(client, mig.flow_run_id)
        orphaned = bool(mig.flow_run_id) and run_is_orphaned(mig, state, since, ttl=ttl)
        if recovery_action(mig, "CRASHED" if orphaned else state, grace=run_creation_grace) == (
            "leave"
        ):
            done.append(Recovered(mig.id, mig.share_id, state, "leave"))
            continue
        with claimed(mig) as fresh:
            if fresh is None:  # another pass (or a run that just started) has it now
                done.append(Recovered(mig.id, mig.share_id, state, "leave"))
                continue
            if orphaned and mig.flow_run_id:
                with get_client(sync_client=True) as client:
                    _mark_crashed(client, mig.flow_run_id)
                state = "CRASHED"
            done.append(_apply(fresh, state, run_creation_grace))
    for instance_id in lift_stale_freezes():
        log.warning("share instance %s was left frozen by an ended migration; lifted", instance_id)
    for instance_id in expire_retained():
        log.warning("retained instance %s expired without its expiry run; deleted", instance_id)
    if freed := endings.reclaim_deleted():
        log.info("freed the space of %d deleted share instance(s) left by ended runs", freed)
    if pruned := prune_ended_manifests():
        log.info("deleted %d manifest rows of migrations past their retention period", pruned)
    for run_id in wake_waiting():
        log.warning("maintenance run %s resumed: a migration of its batch had ended", run_id)
    return done


@contextmanager
def claimed(mig: UnfinishedMigration) -> Iterator[UnfinishedMigration | None]:
    """The migration as it is now, while this pass holds its lease; None when someone else
    holds it or it changed since `mig` was read (another pass acted on it)."""
    lease = HeldLease(mig.id, f"recovery-{uuid4().hex[:12]}", None)
    if not lease.try_start():
        yield None
        return
    try:  # renewed while the pass works: a slow Prefect call must not let a second pass in
        now = next((m for m in unfinished_migrations() if m.id == mig.id), None)
        same = now is not None and now.flow_run_id == mig.flow_run_id
        yield now if same else None
    finally:
        lease.stop()
