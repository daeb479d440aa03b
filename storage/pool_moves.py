"""Planning maintenance moves: which shares leave a pool, and where they go.

Plain functions over the database; `flows.maintenance` runs the moves as migrations.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.catalog import get_share_type
from storage.db import session_scope
from storage.errors import CapacityError
from storage.models import Pool, Share, ShareInstance
from storage.pools import allocated_gb, get_pool
from storage.scheduler import pick_pool


@dataclass(frozen=True)
class PlannedMove:
    share_id: str
    source_pool: str
    dest_pool: str
    size_gb: int


def _movable_shares(session: Session, pool_name: str) -> list[Share]:
    """Available, idle shares whose active instance lives on `pool_name`, biggest first."""
    rows = session.scalars(
        select(Share)
        .join(ShareInstance, ShareInstance.share_id == Share.id)
        .where(
            ShareInstance.pool_name == pool_name,
            ShareInstance.status == "available",
            Share.status == "available",
        )
        .order_by(Share.size.desc(), Share.created_at, Share.id)
    )
    return list(dict.fromkeys(rows))


def plan_evacuation(
    pool_name: str, *, destination: str | None = None, db_url: str | None = None
) -> tuple[list[PlannedMove], list[str]]:
    """A destination for every share on `pool_name`; also the reasons for shares left behind.

    Destinations are chosen by the scheduler (most free capacity first), counting the moves
    already planned, so several shares do not all pile onto the same pool.
    """
    moves: list[PlannedMove] = []
    problems: list[str] = []
    with session_scope(db_url) as s:
        get_pool(s, pool_name)
        planned: dict[str, int] = {}
        for share in _movable_shares(s, pool_name):
            share_type = get_share_type(s, share.share_type_id)
            try:
                if destination:
                    dest = get_pool(s, destination)
                else:
                    taken = [p for p, gb in planned.items() if _free(s, p) - gb < share.size]
                    dest = pick_pool(s, share_type, share.size, exclude=[pool_name, *taken])
            except CapacityError as exc:
                problems.append(f"share {share.id}: {exc}")
                continue
            planned[dest.name] = planned.get(dest.name, 0) + share.size
            moves.append(PlannedMove(share.id, pool_name, dest.name, share.size))
    return moves, problems


def _free(session: Session, pool_name: str) -> int:
    pool = get_pool(session, pool_name)
    return pool.capacity_gb - allocated_gb(session).get(pool_name, 0)


def pool_fill(*, db_url: str | None = None) -> dict[str, float]:
    """Allocated share of each enabled pool's capacity, in percent."""
    with session_scope(db_url) as s:
        allocated = allocated_gb(s)
        return {
            p.name: 100.0 * allocated.get(p.name, 0) / p.capacity_gb
            for p in s.scalars(select(Pool).where(Pool.enabled.is_(True)).order_by(Pool.name))
            if p.capacity_gb > 0
        }


def plan_rebalance(
    fill_threshold_pct: float, max_moves: int, *, db_url: str | None = None
) -> list[PlannedMove]:
    """Moves from pools above the threshold to the emptiest pools that stay below it."""
    moves: list[PlannedMove] = []
    with session_scope(db_url) as s:
        pools = {p.name: p for p in s.scalars(select(Pool).where(Pool.enabled.is_(True)))}
        used = {name: allocated_gb(s).get(name, 0) for name in pools}

        def fill(name: str) -> float:
            return 100.0 * used[name] / pools[name].capacity_gb

        for name in sorted(pools, key=fill, reverse=True):
            for share in _movable_shares(s, name):
                if len(moves) >= max_moves or fill(name) <= fill_threshold_pct:
                    break
                share_type = get_share_type(s, share.share_type_id)
                full = [
                    p
                    for p in pools
                    if 100.0 * (used[p] + share.size) / pools[p].capacity_gb > fill_threshold_pct
                ]
                try:
                    dest = pick_pool(s, share_type, share.size, exclude=[name, *full])
                except CapacityError:
                    continue
                used[name] -= share.size
                used[dest.name] += share.size
                moves.append(PlannedMove(share.id, name, dest.name, share.size))
    return moves
