"""Phase 2 of a migration: final sync, then the destination becomes the share's.

Modelled on ONTAP `volume move` cutover: the steps before the switch are tried up to
`switchover_attempts` times within `switchover_window_s`; if they still fail, the migration
goes back to waiting for approval with the source intact, and the copy is kept for the next
try. Once the destination is the share's, the only way is forward.
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger

from flows.copy_phase import ProgressArtifact, copy_until_verified
from flows.retention import schedule_expiry
from storage.errors import CancelledError, SharemigError
from storage.settings import get_settings
from tasks import migration_steps as steps

RETRY_PAUSE_S = 2.0


def _prepare(migration_id: str, mechanism: str) -> None:
    """Everything before the switch: the driver's final sync, or the host copy's."""
    if mechanism == "driver":
        steps.driver_complete(migration_id)
    elif not steps.frozen_and_unchanged(migration_id):
        # Not frozen (an fsspec pool), written through a late descriptor, or damaged at the
        # destination: walk the source again and copy what changed.
        artifact = ProgressArtifact(migration_id, "final sync", lazy=True)
        copy_until_verified(migration_id, final_sync=True, artifact=artifact)
    steps.require_complete(migration_id)


@flow(name="switchover", log_prints=False, persist_result=False)
def switchover(migration_id: str, mechanism: str) -> str | None:
    """Final sync (tried again on failure), then ONE transaction makes the destination
    instance the share's, the source instance is deleted (or retained for a rollback, with
    an expiry run scheduled at its deadline), `migration_success`.

    Returns None on success, or why the switchover gave up (the caller goes back to waiting).
    """
    log = get_run_logger()
    settings = get_settings()
    attempts = max(1, settings.switchover_attempts)
    deadline = time.monotonic() + settings.switchover_window_s
    for attempt in range(1, attempts + 1):
        try:
            _prepare(migration_id, mechanism)
            break
        except CancelledError:
            raise
        except Exception as exc:  # the source is intact whatever failed: wait, don't fail
            why = str(exc) if isinstance(exc, SharemigError) else f"{type(exc).__name__}: {exc}"
            failure = f"attempt {attempt}/{attempts}: {why}"
            log.warning("migration %s: switchover %s", migration_id, failure)
            if attempt == attempts or time.monotonic() + RETRY_PAUSE_S > deadline:
                return failure
            time.sleep(RETRY_PAUSE_S)
    steps.switch_to_destination(migration_id)
    retained_until = steps.delete_source(migration_id)
    steps.finish_success(migration_id)
    if retained_until is not None:
        schedule_expiry(migration_id, retained_until)
    steps.reclaim_deleted()  # after the success: clients need not wait on the old copy's removal
    return None
