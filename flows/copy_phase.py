"""Copying a migration's manifest batches with bounded concurrency, one task per batch.

The Prefect UI shows a progress artifact that follows verified bytes.
"""

from __future__ import annotations

from collections import deque
from typing import Any, cast
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import PrefectFuture, as_completed, wait

from storage.migration_copy import copy_pool
from storage.migration_lifecycle import MigrationStatus, status
from storage.settings import get_settings
from tasks import migration_steps as steps


class ProgressArtifact:
    """A progress artifact on the current flow run, updated only when the figure changes."""

    def __init__(self, migration_id: str, what: str) -> None:
        self._last = status(migration_id).percent
        self._what = what
        self._id: UUID = cast(Any, create_progress_artifact)(
            progress=float(self._last),
            key=f"migration-{migration_id}".lower(),
            description=f"{what}: verified bytes of share migration {migration_id}",
        )

    def update(self, st: MigrationStatus) -> None:
        if st.percent != self._last:
            self._last = st.percent
            cast(Any, update_progress_artifact)(
                self._id,
                progress=float(st.percent),
                description=(
                    f"{self._what}: {st.files_verified}/{st.files_planned} files, "
                    f"{st.bytes_verified}/{st.bytes_planned} bytes verified"
                ),
            )


def copy_batches(
    migration_id: str, batches: list[int], *, stoppable: bool, artifact: ProgressArtifact
) -> None:
    """Run `copy-batch` tasks, at most twice `settings.copy_workers` at once.

    On the first failure (or a cancel) no new batch starts, and the ones running are waited
    for before the error propagates, so cleanup never races a writer.
    """
    # Twice the copy workers in flight: a task's own Prefect round trips then overlap another
    # batch's copy, and the pool always has the next batch queued.
    limit = 2 * max(1, get_settings().copy_workers)
    queue = deque(batches)
    running: set[PrefectFuture[MigrationStatus]] = set()
    # The tasks' threads hand their batches to one pool of worker processes (local pairs),
    # so the copy inside the flow runs with the bare mover's parallelism.
    with copy_pool(migration_id):
        try:
            while queue or running:
                while queue and len(running) < limit:
                    running.add(steps.copy_batch.submit(migration_id, queue.popleft(), stoppable))
                for done in as_completed(list(running)):
                    running.discard(done)
                    artifact.update(done.result())
                    break
        finally:
            if running:
                wait(list(running))
