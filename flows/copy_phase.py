"""The host-assisted copy inside a flow: the walk and the copy run at once, one task per batch.

The Prefect UI shows a progress artifact that follows verified bytes.
"""

from __future__ import annotations

import queue
from collections import deque
from typing import Any, cast
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import PrefectFuture, wait

from storage import migration_lifecycle as lifecycle
from storage.errors import CancelledError, IncompleteCopyError
from storage.migration_copy import batch_feed, copy_pool, sync_copy_progress, unverified_entries
from storage.migration_lifecycle import MigrationStatus, status
from storage.settings import get_settings
from tasks import migration_steps as steps

PROGRESS_EVERY_S = 1.0


class ProgressArtifact:
    """A progress artifact on the current flow run, updated only when the figure changes.

    A lazy one is created at its first change (a final sync that finds nothing to copy
    leaves no artifact behind)."""

    def __init__(self, migration_id: str, what: str, *, lazy: bool = False) -> None:
        self._migration_id = migration_id
        self._what = what
        self._last = status(migration_id).percent
        self._id: UUID | None = None if lazy else self._create(self._last)

    def _create(self, percent: int) -> UUID:
        return cast(
            UUID,
            cast(Any, create_progress_artifact)(
                progress=float(percent),
                key=f"migration-{self._migration_id}".lower(),
                description=f"{self._what}: verified bytes of share migration {self._migration_id}",
            ),
        )

    def update(self, st: MigrationStatus) -> None:
        if st.percent == self._last:
            return
        self._last = st.percent
        if self._id is None:
            self._id = self._create(st.percent)
        cast(Any, update_progress_artifact)(
            self._id,
            progress=float(st.percent),
            description=(
                f"{self._what}: {st.files_verified}/{st.files_planned} files, "
                f"{st.bytes_verified}/{st.bytes_planned} bytes verified"
            ),
        )


def plan_and_copy(
    migration_id: str, *, final_sync: bool, stoppable: bool, artifact: ProgressArtifact
) -> None:
    """Run the `plan-copy` task and, while it walks, a `copy-batch` task for each batch it
    closes: at most twice `settings.copy_workers` batches at once.

    On the first failure (or a cancel) no new batch starts, and the tasks still running are
    waited for before the error propagates, so cleanup never races a writer.
    """
    # Twice the copy workers in flight: a task's own Prefect round trips then overlap another
    # batch's copy, and the pool always has the next batch queued.
    limit = 2 * max(1, get_settings().copy_workers)
    # Everything the loop reacts to arrives here, from the walk's thread and the tasks'.
    events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
    waiting: deque[int] = deque()
    seen: set[int] = set()
    running: set[PrefectFuture[Any]] = set()

    def queue_batches(batches: list[int]) -> None:
        fresh = [b for b in batches if b not in seen]
        seen.update(fresh)
        waiting.extend(fresh)

    # The tasks' threads hand their batches to one pool of worker processes (local pairs),
    # so the copy inside the flow runs with the bare mover's parallelism.
    with copy_pool(migration_id), batch_feed(migration_id, lambda b: events.put(("batches", b))):
        plan = steps.plan_copy.submit(migration_id, final_sync)
        plan.add_done_callback(lambda f: events.put(("planned", f)))
        planning = True
        try:
            while planning or waiting or running:
                try:
                    kind, value = events.get(timeout=PROGRESS_EVERY_S)
                except queue.Empty:
                    # A batch takes a while: the counters its workers flush reach the API
                    # and the artifact between task ends too.
                    artifact.update(sync_copy_progress(migration_id))
                    continue
                if kind == "batches":
                    queue_batches(value)
                elif kind == "planned":
                    planning = False
                    queue_batches(value.result())
                else:
                    running.discard(value)
                    artifact.update(value.result())
                while waiting and len(running) < limit:
                    future = steps.copy_batch.submit(migration_id, waiting.popleft(), stoppable)
                    running.add(future)
                    future.add_done_callback(lambda f: events.put(("copied", f)))
        finally:
            wait([*running, cast(PrefectFuture[Any], plan)])


COPY_ROUNDS = 3
"""Plan/copy/finish rounds before entries that keep changing (or failing) count as a failure."""


def copy_until_verified(migration_id: str, *, final_sync: bool, artifact: ProgressArtifact) -> None:
    """Plan, copy and finish in rounds until every manifest entry is verified (like
    `run_copy`): a file that changed under the copy is planned and copied again. Raises
    `IncompleteCopyError` when rounds run out; phase 1 then never reports completed."""
    for _ in range(COPY_ROUNDS):
        if lifecycle.pending_request(migration_id) == "cancel" and not final_sync:
            raise CancelledError(f"migration {migration_id}: cancel requested")
        plan_and_copy(
            migration_id, final_sync=final_sync, stoppable=not final_sync, artifact=artifact
        )
        if steps.finish_copy(migration_id, final_sync):
            return
    count, first = unverified_entries(migration_id)
    raise IncompleteCopyError(
        f"migration {migration_id}: {count} manifest entries still not verified after "
        f"{COPY_ROUNDS} copy rounds (first: {first!r}); they keep changing or failing"
    )
