"""Reconcile migrations with their flow runs after a crash: resume, cancel, or leave alone.

Prefect marks a run `Crashed` when its process dies under a live worker, but not when the
worker dies with it, and it runs no hook when a suspended run is cancelled from the UI. Any
of these would leave a share in `migrating` with nobody working on it. `recover_migrations`
finds such migrations from the database (`storage.migration_recovery` decides what to do)
and either starts a new run, which re-enters the flow and skips finished work through the
manifest and the migration row, or aborts the migration with the source intact.

Call it when the orchestration starts (`running_are_dead=True` when this host's worker was
the only one and has just been restarted: a run still marked Running whose process is not
alive on this host is a corpse; one whose process outlived its worker is left to finish), and
whenever an operator asks (`sharemig` / the API can cancel a recovered migration as usual).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from flows.control import create_run, deliver_decision
from storage import migration_lifecycle as lifecycle
from storage.errors import InvalidStateError
from storage.migration_freeze import lift_stale_freezes
from storage.migration_recovery import (
    RUN_CREATION_GRACE,
    UnfinishedMigration,
    recovery_action,
    unfinished_migrations,
)

log = logging.getLogger(__name__)

_ORPHANABLE = frozenset({"RUNNING", "PENDING", "CANCELLING"})


@dataclass(frozen=True)
class Recovered:
    migration_id: str
    share_id: str
    run_state: str | None
    action: str
    new_flow_run_id: str | None = None


def _run_state(client: Any, run_id: str | None) -> str | None:
    from prefect.exceptions import ObjectNotFound

    if run_id is None:
        return None
    try:
        run = client.read_flow_run(UUID(run_id))
    except ObjectNotFound:
        return None
    return None if run.state is None else str(run.state.type.value)


def run_process_alive(run_id: str) -> bool:
    """A process of the flow run is alive on this host (the process worker exports its id).

    A worker killed alone leaves its runs' processes running: they are not corpses.
    """
    marker = f"PREFECT__FLOW_RUN_ID={run_id}".encode()
    proc = Path("/proc")
    if not proc.is_dir():
        return False
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            zombie = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[0] == b"Z"
        except (OSError, IndexError):
            continue
        if not zombie and marker in environ.split(b"\0"):
            return True
    return False


def _mark_crashed(client: Any, run_id: str) -> None:
    from prefect.states import Crashed

    client.set_flow_run_state(
        UUID(run_id),
        Crashed(message="the worker running this flow was restarted; sharemig recovered it"),
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
            lifecycle.abort(mig.id, "migration_cancelled", reason)
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


def recover_migrations(
    *, running_are_dead: bool = False, run_creation_grace: timedelta = RUN_CREATION_GRACE
) -> list[Recovered]:
    """Resume or cancel every unfinished migration whose run is gone; returns what was done.

    `run_creation_grace`: how long a migration admitted without a run is given before its
    run counts as lost (the starter creates it right after admission).
    """
    from prefect import get_client

    done: list[Recovered] = []
    for mig in unfinished_migrations():
        with get_client(sync_client=True) as client:
            state = _run_state(client, mig.flow_run_id)
            if (
                running_are_dead
                and state in _ORPHANABLE
                and mig.flow_run_id
                and not run_process_alive(mig.flow_run_id)
            ):
                _mark_crashed(client, mig.flow_run_id)
                state = "CRASHED"
        done.append(_apply(mig, state, run_creation_grace))
    for instance_id in lift_stale_freezes():
        log.warning("share instance %s was left frozen by an ended migration; lifted", instance_id)
    return done
