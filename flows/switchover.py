"""Phase 2 of a migration: final sync, then the destination becomes the share's."""

from __future__ import annotations

from prefect import flow

from flows.copy_phase import ProgressArtifact, plan_and_copy
from tasks import migration_steps as steps


@flow(name="switchover", log_prints=False, persist_result=False)
def switchover(migration_id: str, mechanism: str) -> str:
    """Driver: the driver's final sync and switch. Host-assisted: re-walk the source, re-copy
    what changed since phase 1 (normally nothing: the source was read-only), verify.

    Then ONE transaction makes the destination instance the share's, the source instance is
    deleted, and the migration ends in `migration_success`.
    """
    if mechanism == "driver":
        steps.driver_complete(migration_id)
    else:
        artifact = ProgressArtifact(migration_id, "final sync", lazy=True)
        plan_and_copy(migration_id, final_sync=True, stoppable=False, artifact=artifact)
        steps.finish_copy(migration_id, final_sync=True)
    steps.switch_to_destination(migration_id)
    steps.delete_source(migration_id)
    steps.finish_success(migration_id)
    return "migration_success"
