"""The host-assisted copy inside a flow: rounds of one `copy-round` task each, then `finish-copy`.

The Prefect UI shows a progress artifact that follows verified bytes.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, cast
from uuid import UUID

from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.futures import wait

from storage import migration_lifecycle as lifecycle
from storage.copy_pace import migration_pace
from storage.errors import CancelledError, IncompleteCopyError
from storage.migration_copy import unverified_entries
from storage.migration_lifecycle import MigrationStatus, status
from storage.migration_report import migration_summary
from storage.progress import Rate
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
            description=describe(self._what, st, migration_pace(self._migration_id)),
        )


def describe(what: str, st: MigrationStatus, rate: Rate) -> str:
    """The artifact's text: counters, then the same rates and ETA as the API's `details`."""
    text = (
        f"{what}: {st.files_verified}/{st.files_planned} files, "
        f"{st.bytes_verified}/{st.bytes_planned} bytes verified"
    )
    shown = rate.as_details()
    if shown["bytes_per_second"] is not None:
        text += f"; {shown['bytes_per_second']} bytes/s, {shown['files_per_second']} files/s"
    if shown["eta_seconds"] is not None:
        text += f"; ETA {shown['eta_seconds']} s"
    return text


def copy_round(
    migration_id: str, *, final_sync: bool, stoppable: bool, artifact: ProgressArtifact
) -> None:
    """One `copy-round` task (the walk, and every batch copied as the walk closes it, on the
    executor the task owns); meanwhile the flow keeps the progress artifact current."""
    future = steps.copy_round.submit(migration_id, final_sync, stoppable)
    while not wait([future], timeout=PROGRESS_EVERY_S).done:
        artifact.update(status(migration_id))
    future.result()
    artifact.update(status(migration_id))


COPY_ROUNDS = 3
"""Plan/copy/finish rounds before entries that keep changing (or failing) count as a failure."""


def copy_until_verified(migration_id: str, *, final_sync: bool, artifact: ProgressArtifact) -> None:
    """Plan, copy and finish in rounds until every manifest entry is verified (like
    `run_copy`): a file that changed under the copy is planned and copied again. Raises
    `IncompleteCopyError` when rounds run out; phase 1 then never reports completed."""
    for _ in range(COPY_ROUNDS):
        if lifecycle.pending_request(migration_id) == "cancel" and not final_sync:
            raise CancelledError(f"migration {migration_id}: cancel requested")
        copy_round(migration_id, final_sync=final_sync, stoppable=not final_sync, artifact=artifact)
        if steps.finish_copy(migration_id, final_sync):
            return
    count, first = unverified_entries(migration_id)
    raise IncompleteCopyError(
        f"migration {migration_id}: {count} manifest entries still not verified after "
        f"{COPY_ROUNDS} copy rounds (first: {first!r}); they keep changing or failing"
    )


def publish_report(migration_id: str) -> None:
    """The report's summary as a table artifact on the run; the full listing (one row per
    entry, both hashes) is `sharemig report SHARE` or the admin API route."""
    summary = migration_summary(migration_id)
    if summary is None:
        return
    rows = [{"item": key, "value": str(value)} for key, value in asdict(summary).items()]
    rows.append({"item": "full listing", "value": f"sharemig report {summary.share_id}"})
    cast(Any, create_table_artifact)(
        table=rows,
        key=f"report-{migration_id}".lower(),
        description=f"Copy report of share migration {migration_id} (phase 1)",
    )
