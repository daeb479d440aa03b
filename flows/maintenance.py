"""Maintenance flows: drain a pool, or rebalance full pools. Each move is a normal migration
started through `flows.control` (same admission rules, same flow, same approval).

The flow does not wait in a process while its migrations run (their approval may take days):
it records its batch in the database (`storage.maintenance_batch`), starts up to
`max_concurrent` migrations and suspends. Each migration that ends resumes it
(`flows.maintenance_wake`); the resumed run re-enters from the top, reads the batch, records
the endings and starts the next moves, until every move has an outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast
from uuid import uuid4

from prefect import flow, get_run_logger, runtime
from prefect.artifacts import create_table_artifact
from prefect.flow_runs import suspend_flow_run

from flows import control
from storage import maintenance_batch as batch
from storage.errors import SharemigError
from storage.pool_moves import PlannedMove, plan_evacuation, plan_rebalance


def _start(move: batch.Move) -> str | None:
    req = control.StartRequest(
        host=str(move.dest_pool),
        preserve_metadata=False,
        preserve_snapshots=False,
        writable=False,
        nondisruptive=False,
    )
    outcome = control.start_migration(move.share_id, req)
    return outcome.migration_id


def _start_next(run_id: str, moves: list[batch.Move], max_concurrent: int) -> None:
    log = get_run_logger()
    free = max(1, max_concurrent) - sum(m.active for m in moves)
    for move in [m for m in moves if m.pending][: max(0, free)]:
        try:
            migration_id = _start(move)
        except SharemigError as exc:
            batch.record_start(run_id, move.share_id, outcome=f"not started: {exc}")
            log.warning("share %s not moved: %s", move.share_id, exc)
            continue
        if migration_id is None:  # already there: nothing to move
            batch.record_start(run_id, move.share_id, outcome="migration_success")
            continue
        batch.record_start(run_id, move.share_id, migration_id=migration_id)
        log.info(
            "share %s: %s -> %s (migration %s)",
            move.share_id,
            move.source_pool,
            move.dest_pool,
            migration_id,
        )


def run_batch(
    plan: Callable[[], tuple[list[PlannedMove], dict[str, str]]],
    *,
    max_concurrent: int,
    auto_approve: bool,
) -> dict[str, str]:
    """Run the planned moves as migrations, at most `max_concurrent` at once; returns share id
    -> outcome once every move has one.

    Without `auto_approve` each migration waits for an operator's approval (Prefect UI,
    `sharemig approve` or the Manila API) like any other; meanwhile this run is suspended.
    """
    log = get_run_logger()
    run_id = str(runtime.flow_run.get_id())
    if not batch.has_plan(run_id):
        planned, unplaced = plan()
        batch.record_plan(run_id, planned, unplaced, auto_approve=auto_approve)
        log.info("plan: %d move(s), %d share(s) left in place", len(planned), len(unplaced))
    while True:
        seen = batch.moves(run_id)
        for move in seen:
            if move.just_ended:
                log.info("share %s: %s", move.share_id, move.outcome)
        _start_next(run_id, seen, max_concurrent)
        moves = batch.moves(run_id)
        if all(m.outcome is not None for m in moves):
            outcomes = {m.share_id: str(m.outcome) for m in moves}
            _publish_outcomes(run_id, outcomes)
            return outcomes
        if any(m.pending for m in moves) and not any(m.active for m in moves):
            continue  # every start in this round ended at once: start the next ones
        waiting = [m.share_id for m in moves if m.active]
        log.info("suspended until one of %d migration(s) ends: %s", len(waiting), waiting)
        # A fresh key per wait: this run re-enters from the top after every resume.
        suspend_flow_run(timeout=None, key=f"batch-{uuid4().hex[:12]}")


def _publish_outcomes(run_id: str, outcomes: dict[str, str]) -> None:
    """Every move's ending as a table artifact on the run: written through the API at once,
    unlike log lines, which a run under load may still be sending when its process exits."""
    cast(Any, create_table_artifact)(
        table=[{"share": share, "outcome": outcome} for share, outcome in outcomes.items()],
        key=f"maintenance-{run_id}".lower(),
        description=f"How each of the {len(outcomes)} planned move(s) ended",
    )


def _evacuation_plan(
    pool: str, destination: str | None
) -> Callable[[], tuple[list[PlannedMove], dict[str, str]]]:
    def plan() -> tuple[list[PlannedMove], dict[str, str]]:
        moves, problems = plan_evacuation(pool, destination=destination)
        for problem in problems:
            get_run_logger().warning("cannot evacuate %s", problem)
        return moves, {p.split(":", 1)[0].removeprefix("share "): p for p in problems}

    return plan


@flow(name="evacuate-pool", persist_result=False)
def evacuate_pool(
    pool: str,
    max_concurrent: int = 2,
    auto_approve: bool = False,
    destination: str | None = None,
) -> dict[str, str]:
    """Move every share off `pool` (to `destination`, or wherever the scheduler fits it)."""
    return run_batch(
        _evacuation_plan(pool, destination),
        max_concurrent=max_concurrent,
        auto_approve=auto_approve,
    )


@flow(name="rebalance-pools", persist_result=False)
def rebalance_pools(
    fill_threshold_pct: float = 80.0,
    max_moves: int = 5,
    auto_approve: bool = True,
    max_concurrent: int = 2,
) -> dict[str, str]:
    """Move shares off pools filled above `fill_threshold_pct` to emptier compatible pools."""

    def plan() -> tuple[list[PlannedMove], dict[str, str]]:
        moves = plan_rebalance(fill_threshold_pct, max_moves)
        get_run_logger().info("rebalance plan: %d move(s)", len(moves))
        return moves, {}

    return run_batch(plan, max_concurrent=max_concurrent, auto_approve=auto_approve)
