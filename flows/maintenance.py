"""Maintenance flows: drain a pool, or rebalance full pools. Each move is a normal migration
started through `flows.control` (same admission rules, same flow, same approval)."""

from __future__ import annotations

import time

from prefect import flow, get_run_logger

from flows import control
from storage import migration_lifecycle as lifecycle
from storage.errors import SharemigError
from storage.pool_moves import PlannedMove, plan_evacuation, plan_rebalance

POLL_S = 2.0


def _start(move: PlannedMove) -> str | None:
    req = control.StartRequest(
        host=move.dest_pool,
        preserve_metadata=False,
        preserve_snapshots=False,
        writable=False,
        nondisruptive=False,
    )
    outcome = control.start_migration(move.share_id, req)
    return outcome.migration_id


def run_moves(
    moves: list[PlannedMove], *, max_concurrent: int, auto_approve: bool
) -> dict[str, str]:
    """Run the moves as migrations, at most `max_concurrent` at once; share id -> outcome.

    Without `auto_approve` each migration waits for an operator's approval (Prefect UI,
    `sharemig approve` or the Manila API) like any other, and this flow waits with it.
    """
    log = get_run_logger()
    queue = list(moves)
    active: dict[str, str] = {}  # migration id -> share id
    approved: set[str] = set()
    results: dict[str, str] = {}
    while queue or active:
        while queue and len(active) < max(1, max_concurrent):
            move = queue.pop(0)
            try:
                migration_id = _start(move)
            except SharemigError as exc:
                results[move.share_id] = f"not started: {exc}"
                log.warning("share %s not moved: %s", move.share_id, exc)
                continue
            if migration_id is None:
                results[move.share_id] = "migration_success"
                continue
            log.info("share %s: %s -> %s", move.share_id, move.source_pool, move.dest_pool)
            active[migration_id] = move.share_id
        time.sleep(POLL_S)
        for migration_id, share_id in list(active.items()):
            st = lifecycle.status(migration_id)
            if st.finished:
                results[share_id] = str(st.outcome)
                del active[migration_id]
            elif auto_approve and st.phase1_done and migration_id not in approved:
                approved.add(migration_id)
                if st.requested_action is None:
                    control.complete_migration(share_id, reason="auto-approved by maintenance")
    return results


@flow(name="evacuate-pool", persist_result=False)
def evacuate_pool(
    pool: str,
    max_concurrent: int = 2,
    auto_approve: bool = False,
    destination: str | None = None,
) -> dict[str, str]:
    """Move every share off `pool` (to `destination`, or wherever the scheduler fits it)."""
    moves, problems = plan_evacuation(pool, destination=destination)
    for problem in problems:
        get_run_logger().warning("cannot evacuate %s", problem)
    results = run_moves(moves, max_concurrent=max_concurrent, auto_approve=auto_approve)
    results.update({p.split(":", 1)[0].removeprefix("share "): p for p in problems})
    return results


@flow(name="rebalance-pools", persist_result=False)
def rebalance_pools(
    fill_threshold_pct: float = 80.0,
    max_moves: int = 5,
    auto_approve: bool = True,
    max_concurrent: int = 2,
) -> dict[str, str]:
    """Move shares off pools filled above `fill_threshold_pct` to emptier compatible pools."""
    moves = plan_rebalance(fill_threshold_pct, max_moves)
    get_run_logger().info("rebalance plan: %d move(s)", len(moves))
    return run_moves(moves, max_concurrent=max_concurrent, auto_approve=auto_approve)
