"""`max_concurrent_migrations`: one Prefect global concurrency limit per pool.

A migration run holds one slot of its source pool and one of its destination pool while it
moves data (phase 1, the switchover); a start beyond a pool's limit waits in
`migration_starting` (Manila's queued state) with its run blocked on the slot, and the
Prefect UI's Concurrency page shows who holds the pool's slots. The wait for approval holds
no slot: the suspended run left the block, and it waits for one again when it resumes. A
crashed run's slots come back when their lease runs out (`LEASE_S`), on any host.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect import get_run_logger
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists

from flows.prefect_calls import call_prefect
from storage import migration_lifecycle as lifecycle
from storage.errors import CancelledError
from storage.pool_limits import PoolLimit, migration_pools

LEASE_S = 60.0
"""A slot's lease (renewed by the holder); how long a crashed run keeps a pool's slot."""
TRY_S = 30.0
"""How long one try to take the slots waits before the queued run checks for a cancel (each
timed-out try costs an ERROR line from Prefect's concurrency service in the run's log)."""


def _limited(migration_id: str) -> list[PoolLimit]:
    return [p for p in migration_pools(migration_id) if p.max_concurrent_migrations]


def sync_limits(limits: list[PoolLimit]) -> None:
    """Create or update each pool's limit to what the inventory says now."""
    for pool in limits:
        name, limit = pool.slot_name, int(pool.max_concurrent_migrations or 1)

        def upsert(client: Any, name: str = name, limit: int = limit) -> None:
            try:
                client.upsert_global_concurrency_limit_by_name(name, limit)
            except ObjectAlreadyExists:
                # Another run of the same pool created it between this one's read and create
                # (Prefect's upsert is not atomic): it exists now, so this updates it.
                client.upsert_global_concurrency_limit_by_name(name, limit)

        call_prefect(f"set the concurrency limit of pool {pool.pool}", upsert)


@contextmanager
def pool_slots(migration_id: str) -> Iterator[None]:
    """Hold a slot of every limited pool the migration touches (waiting for them first).

    The wait is cut into short tries so a cancel recorded meanwhile ends the queued
    migration (`CancelledError`) instead of waiting for a slot first."""
    limits = _limited(migration_id)
    if not limits:
        yield
        return
    sync_limits(limits)
    names = [p.slot_name for p in limits]
    get_run_logger().info(
        "migration %s: waiting for a migration slot on %s",
        migration_id,
        ", ".join(f"{p.pool} (max {p.max_concurrent_migrations})" for p in limits),
    )
    acquired = False
    while not acquired:
        try:
            with concurrency(
                names, occupy=1, timeout_seconds=TRY_S, lease_duration=LEASE_S, strict=True
            ):
                acquired = True
                get_run_logger().info("migration %s: got its pool slots", migration_id)
                yield
        except TimeoutError:
            if acquired:
                raise
            if lifecycle.pending_request(migration_id) == "cancel":
                raise CancelledError(f"migration {migration_id}: cancelled while queued") from None
