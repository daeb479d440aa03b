"""Thin Prefect tasks over `storage.migration_lifecycle`, `migration_endings` and `migration_copy`.

Each task passes ids and small values only; retries happen for transient errors alone; no
result caching (the database, not Prefect, makes the steps idempotent).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from storage import migration_copy as copy_steps
from storage import migration_endings as endings
from storage import migration_lifecycle as lifecycle
from storage.migration_lifecycle import MigrationStatus
from tasks.retry_policy import RETRIES, RETRY_DELAYS, RETRY_JITTER, retry_transient

_RETRYING: dict[str, Any] = {
    "retries": RETRIES,
    "retry_delay_seconds": RETRY_DELAYS,
    "retry_jitter_factor": RETRY_JITTER,
    "retry_condition_fn": retry_transient,
    "cache_policy": NO_CACHE,
    "persist_result": False,
}


@task(name="begin", **_RETRYING)
def begin(migration_id: str, flow_run_id: str | None) -> MigrationStatus:
    return lifecycle.begin(migration_id, flow_run_id, advance=False)


@task(name="advance-start", **_RETRYING)
def advance_start(migration_id: str) -> None:
    lifecycle.advance_start(migration_id)


@task(name="reserve-destination", **_RETRYING)
def reserve_destination(migration_id: str) -> str:
    return lifecycle.reserve_destination(migration_id)


@task(name="choose-mechanism", **_RETRYING)
def choose_mechanism(migration_id: str) -> str:
    return lifecycle.choose_path(migration_id)


@task(name="driver-start", **_RETRYING)
def driver_start(migration_id: str) -> None:
    copy_steps.driver_start(migration_id)


@task(name="driver-continue", **_RETRYING)
def driver_continue(migration_id: str) -> bool:
    return copy_steps.driver_continue(migration_id)


@task(name="driver-complete", **_RETRYING)
def driver_complete(migration_id: str) -> None:
    copy_steps.driver_complete(migration_id)


@task(name="copy-round", **_RETRYING)
def copy_round(migration_id: str, final_sync: bool = False, stoppable: bool = True) -> None:
    copy_steps.host_copy_round(migration_id, final_sync=final_sync, stoppable=stoppable)


@task(name="finish-copy", **_RETRYING)
def finish_copy(migration_id: str, final_sync: bool = False) -> bool:
    return copy_steps.host_finish(migration_id, final_sync=final_sync)


@task(name="frozen-and-unchanged", **_RETRYING)
def frozen_and_unchanged(migration_id: str) -> bool:
    return copy_steps.frozen_and_unchanged(migration_id)


@task(name="require-complete", **_RETRYING)
def require_complete(migration_id: str) -> None:
    copy_steps.require_complete(migration_id)


@task(name="return-to-waiting", **_RETRYING)
def return_to_waiting(migration_id: str, reason: str) -> bool:
    return endings.return_to_waiting(migration_id, reason)


@task(name="switch-to-destination", **_RETRYING)
def switch_to_destination(migration_id: str) -> None:
    endings.switch_to_destination(migration_id)


@task(name="delete-source", **_RETRYING)
def delete_source(migration_id: str) -> datetime | None:
    return endings.delete_source(migration_id)


@task(name="finish-success", **_RETRYING)
def finish_success(migration_id: str) -> None:
    endings.finish_success(migration_id)


@task(name="reclaim-deleted", **_RETRYING)
def reclaim_deleted() -> int:
    return endings.reclaim_deleted()


@task(name="abort", **_RETRYING)
def abort(migration_id: str, outcome: str, reason: str) -> str:
    return endings.abort(migration_id, outcome, reason)
