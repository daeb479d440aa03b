"""The batch of a maintenance run (evacuate / rebalance) in the database.

The flow records its plan once, then suspends while the migrations it started run: no process
waits for them. A migration that ends wakes the flow when that gives it something to do
(`runs_to_wake`, `flows.maintenance_wake`); the resumed run re-enters from the top, reads the
batch back, records what ended and starts the next moves. The rows are also the report the
flow returns: one outcome per share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from storage.db import session_scope
from storage.models import MaintenanceMove, Migration
from storage.models.base import utcnow

if TYPE_CHECKING:  # the migration flow imports this module; planning is not its business
    from storage.pool_moves import PlannedMove


@dataclass(frozen=True)
class Move:
    share_id: str
    source_pool: str
    dest_pool: str | None
    migration_id: str | None
    outcome: str | None
    just_ended: bool = False
    """Its migration's ending was first seen by this read."""

    @property
    def pending(self) -> bool:
        return self.migration_id is None and self.outcome is None

    @property
    def active(self) -> bool:
        return self.migration_id is not None and self.outcome is None


def record_plan(
    flow_run_id: str,
    moves: list[PlannedMove],
    unplaced: dict[str, str],
    *,
    auto_approve: bool,
    db_url: str | None = None,
) -> None:
    """The run's batch: each move, and each share it could not place (with why)."""
    with session_scope(db_url) as s:
        for pos, m in enumerate(moves):
            s.add(
                MaintenanceMove(
                    flow_run_id=flow_run_id,
                    position=pos,
                    share_id=m.share_id,
                    source_pool=m.source_pool,
                    dest_pool=m.dest_pool,
                    auto_approve=auto_approve,
                )
            )
        for pos, (share_id, why) in enumerate(unplaced.items(), start=len(moves)):
            s.add(
                MaintenanceMove(
                    flow_run_id=flow_run_id,
                    position=pos,
                    share_id=share_id,
                    source_pool="",
                    auto_approve=auto_approve,
                    outcome=why,
                )
            )


def has_plan(flow_run_id: str, *, db_url: str | None = None) -> bool:
    with session_scope(db_url) as s:
        return (
            s.scalar(select(MaintenanceMove.id).where(MaintenanceMove.flow_run_id == flow_run_id))
            is not None
        )


def moves(flow_run_id: str, *, db_url: str | None = None) -> list[Move]:
    """The batch in plan order, each move's migration outcome folded in once it ended."""
    with session_scope(db_url) as s:
        rows = s.execute(
            select(MaintenanceMove, Migration.outcome)
            .outerjoin(Migration, Migration.id == MaintenanceMove.migration_id)
            .where(MaintenanceMove.flow_run_id == flow_run_id)
            .order_by(MaintenanceMove.position)
        )
        out = []
        for row, ended in rows:
            just_ended = row.outcome is None and ended is not None
            if just_ended:
                row.outcome = ended
            out.append(
                Move(
                    row.share_id,
                    row.source_pool,
                    row.dest_pool,
                    row.migration_id,
                    row.outcome,
                    just_ended,
                )
            )
        return out


def record_start(
    flow_run_id: str,
    share_id: str,
    *,
    migration_id: str | None = None,
    outcome: str | None = None,
    db_url: str | None = None,
) -> None:
    """The move's migration, or its outcome when it did not start (or needed none)."""
    with session_scope(db_url) as s:
        s.execute(
            update(MaintenanceMove)
            .where(MaintenanceMove.flow_run_id == flow_run_id, MaintenanceMove.share_id == share_id)
            .values(migration_id=migration_id, outcome=outcome, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )


def auto_approved(migration_id: str, *, db_url: str | None = None) -> bool:
    """The migration was started by a maintenance run that approves its switchovers."""
    with session_scope(db_url) as s:
        return bool(
            s.scalar(
                select(MaintenanceMove.auto_approve).where(
                    MaintenanceMove.migration_id == migration_id
                )
            )
        )


def owner_of(migration_id: str, *, db_url: str | None = None) -> str | None:
    """The maintenance flow run that started `migration_id`, if one did."""
    with session_scope(db_url) as s:
        return s.scalar(
            select(MaintenanceMove.flow_run_id).where(MaintenanceMove.migration_id == migration_id)
        )


def runs_to_wake(*, db_url: str | None = None) -> list[str]:
    """Maintenance runs to resume: one of their migrations ended since the run last looked,
    and the run has something to do about it (a move to start, or nothing left to wait for).
    An ending while other migrations still run and nothing waits to start is picked up at the
    next wake: one process start per free slot, not one per ending."""
    with session_scope(db_url) as s:
        rows = s.execute(
            select(MaintenanceMove.flow_run_id, MaintenanceMove.migration_id, Migration.outcome)
            .outerjoin(Migration, Migration.id == MaintenanceMove.migration_id)
            .where(MaintenanceMove.outcome.is_(None))
        ).all()
    unseen, pending, running = set(), set(), set()
    for run_id, migration_id, ended in rows:
        if migration_id is None:
            pending.add(run_id)
        elif ended is None:
            running.add(run_id)
        else:
            unseen.add(run_id)
    return sorted(r for r in unseen if r in pending or r not in running)
