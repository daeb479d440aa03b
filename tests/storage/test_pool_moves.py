"""`storage.pool_moves`: the maintenance plans (evacuate a pool, rebalance by fill) on a real
database, before any flow runs a move. Pools: a (10 GiB), b (20 GiB), obj (50 GiB, fsspec:
no snapshot support, so the default type cannot go there)."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from storage.catalog import create_share_type
from storage.errors import NotFoundError
from storage.pool_moves import PlannedMove, plan_evacuation, plan_rebalance, pool_fill
from storage.shares import create_share

POOL_A, POOL_B, POOL_OBJ = "h1@lfs#a", "h1@lfs#b", "h2@obj#bucket"


def _shares(
    session: Session, host: str, *sizes: int, share_type_id: str | None = None
) -> list[str]:
    ids = [
        create_share(session, project_id="p1", size=size, host=host, share_type_id=share_type_id).id
        for size in sizes
    ]
    session.commit()
    return ids


def test_evacuation_spreads_the_shares_biggest_first(session: Session, db_url: str) -> None:
    plain = create_share_type(session, "plain", {"driver_handles_share_servers": False}).id
    big, small, mid = _shares(session, POOL_B, 8, 2, 5, share_type_id=plain)
    moves, problems = plan_evacuation(POOL_B, db_url=db_url)
    assert problems == []
    # obj has the most room (50 GiB) until the plan itself fills it past a (10 GiB).
    assert moves == [
        PlannedMove(big, POOL_B, POOL_OBJ, 8),
        PlannedMove(mid, POOL_B, POOL_OBJ, 5),
        PlannedMove(small, POOL_B, POOL_OBJ, 2),
    ]


def test_evacuation_counts_the_moves_it_already_planned(session: Session, db_url: str) -> None:
    # The default type needs snapshots: only pool a can take shares leaving b.
    first, second, third = _shares(session, POOL_B, 6, 4, 3)
    moves, problems = plan_evacuation(POOL_B, db_url=db_url)
    assert moves == [PlannedMove(first, POOL_B, POOL_A, 6), PlannedMove(second, POOL_B, POOL_A, 4)]
    (problem,) = problems
    assert problem.startswith(f"share {third}: no pool can hold a 3 GiB share")


def test_evacuation_to_a_named_pool_and_what_is_left_alone(session: Session, db_url: str) -> None:
    moving, busy = _shares(session, POOL_A, 1, 1)
    from storage.shares import get_share

    get_share(session, busy).status = "migrating"  # not movable: already on its way
    session.commit()
    moves, problems = plan_evacuation(POOL_A, destination=POOL_B, db_url=db_url)
    assert (moves, problems) == ([PlannedMove(moving, POOL_A, POOL_B, 1)], [])
    with pytest.raises(NotFoundError):
        plan_evacuation("h1@lfs#nope", db_url=db_url)


def test_pool_fill_is_allocated_over_capacity(session: Session, db_url: str) -> None:
    _shares(session, POOL_A, 5)
    _shares(session, POOL_B, 2, 3)
    assert pool_fill(db_url=db_url) == {POOL_A: 50.0, POOL_B: 25.0, POOL_OBJ: 0.0}


def test_rebalance_moves_from_full_pools_until_below_the_threshold(
    session: Session, db_url: str
) -> None:
    plain = create_share_type(session, "plain", {"driver_handles_share_servers": False}).id
    big, _, _ = _shares(session, POOL_A, 4, 3, 2, share_type_id=plain)  # a: 90 %
    _shares(session, POOL_B, 5)  # b: 25 %
    moves = plan_rebalance(60.0, 10, db_url=db_url)
    # Biggest first to the emptiest pool (obj), until a is at or below 60 %: 9 -> 5 GiB.
    assert moves == [PlannedMove(big, POOL_A, POOL_OBJ, 4)]
    assert plan_rebalance(20.0, 1, db_url=db_url) == moves  # max_moves caps the plan
    # A threshold every pool is already under moves nothing.
    assert plan_rebalance(95.0, 10, db_url=db_url) == []


def test_rebalance_never_fills_a_destination_past_the_threshold(
    session: Session, db_url: str
) -> None:
    # Default type: only a and b are possible, b would pass 40 % with a 6 GiB share.
    (share,) = _shares(session, POOL_A, 6)  # a: 60 %
    _shares(session, POOL_B, 3)  # b: 15 %, 45 % with the share
    assert plan_rebalance(40.0, 10, db_url=db_url) == []
    assert plan_rebalance(50.0, 10, db_url=db_url) == [PlannedMove(share, POOL_A, POOL_B, 6)]
