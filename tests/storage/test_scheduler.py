"""`storage.scheduler`'s filters, one verdict per reason, and the ranking with `exclude` and a
zone (placement itself, weighing by free space, is in test_shares.py)."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from storage.catalog import create_share_type
from storage.errors import CapacityError
from storage.models import Pool
from storage.scheduler import fit, pick_pool, rank_pools

POOL_A, POOL_B, POOL_OBJ = "h1@lfs#a", "h1@lfs#b", "h2@obj#bucket"
PLAIN = {"driver_handles_share_servers": "False"}


def _pool(session: Session, name: str) -> Pool:
    pool = session.get(Pool, name)
    assert pool is not None
    return pool


@pytest.mark.parametrize(
    ("pool", "specs", "size", "free", "az", "reason"),
    [
        (POOL_A, {}, 1, 10, None, None),
        (POOL_A, {}, 11, 10, None, "10 GiB free, 11 GiB needed"),
        (POOL_A, {"driver_handles_share_servers": "True"}, 1, 10, None, "share servers"),
        (POOL_OBJ, {"snapshot_support": "True"}, 1, 50, None, "no snapshot support"),
        (
            POOL_OBJ,
            {"create_share_from_snapshot_support": "True"},
            1,
            50,
            None,
            "cannot create shares from snapshots",
        ),
        (POOL_A, {"revert_to_snapshot_support": "True"}, 1, 10, None, "cannot revert"),
        (POOL_A, {"share_backend_name": "other"}, 1, 10, None, "type wants backend other"),
        (POOL_A, {"share_backend_name": "lfs"}, 1, 10, None, None),
        (POOL_A, {}, 1, 10, "zone-2", "in zone nova, not zone-2"),
    ],
)
def test_fit_says_why(
    session: Session,
    pool: str,
    specs: dict[str, str],
    size: int,
    free: int,
    az: str | None,
    reason: str | None,
) -> None:
    share_type = create_share_type(session, "t", {**PLAIN, **specs})
    verdict = fit(_pool(session, pool), share_type, size, free, az)
    assert verdict.free_gb == free
    if reason is None:
        assert verdict.reason is None
    else:
        assert verdict.reason is not None and reason in verdict.reason


def test_a_disabled_pool_is_passed_over(session: Session) -> None:
    plain = create_share_type(session, "plain", PLAIN)
    _pool(session, POOL_OBJ).enabled = False
    assert fit(_pool(session, POOL_OBJ), plain, 1, 50, None).reason == "disabled"
    assert pick_pool(session, plain, 1).name == POOL_B


def test_ranking_puts_fitting_pools_first_and_honours_exclude(session: Session) -> None:
    plain = create_share_type(session, "plain", PLAIN)
    ranked = rank_pools(session, plain, 15)
    assert [(f.pool.name, f.reason is None) for f in ranked] == [
        (POOL_OBJ, True),
        (POOL_B, True),
        (POOL_A, False),
    ]
    assert [f.pool.name for f in rank_pools(session, plain, 1, exclude=[POOL_OBJ])] == [
        POOL_B,
        POOL_A,
    ]
    with pytest.raises(CapacityError, match=r"h1@lfs#a: in zone nova, not far"):
        pick_pool(session, plain, 1, az="far")
    with pytest.raises(CapacityError, match="the inventory has no pools"):
        pick_pool(session, plain, 1, exclude=[POOL_A, POOL_B, POOL_OBJ])
