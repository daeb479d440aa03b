"""Choosing a pool for a share: filter by type, size and zone, then weigh by free capacity."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.drivers.registry import driver_class
from storage.errors import CapacityError
from storage.models import Pool, ShareType
from storage.pools import allocated_gb


@dataclass(frozen=True)
class PoolFit:
    """Why a pool does or does not fit, so a refusal can say so."""

    pool: Pool
    free_gb: int
    reason: str | None


def capability_problem(pool: Pool, share_type: ShareType) -> str | None:
    """Why the pool's capabilities do not match the type (Manila's capabilities filter)."""
    if share_type.spec_bool("driver_handles_share_servers"):
        return "share servers (driver_handles_share_servers) not supported"
    caps = driver_class(pool.driver).capabilities
    if share_type.spec_bool("snapshot_support") and not caps.snapshot_support:
        return f"driver {pool.driver} has no snapshot support"
    if (
        share_type.spec_bool("create_share_from_snapshot_support")
        and not caps.create_share_from_snapshot_support
    ):
        return f"driver {pool.driver} cannot create shares from snapshots"
    if share_type.spec_bool("revert_to_snapshot_support") and not caps.revert_to_snapshot_support:
        return f"driver {pool.driver} cannot revert to a snapshot"
    backend = share_type.extra_specs.get("share_backend_name")
    if backend and backend != pool.backend:
        return f"type wants backend {backend}"
    return None


def fit(pool: Pool, share_type: ShareType, size_gb: int, free: int, az: str | None) -> PoolFit:
    if not pool.enabled:
        return PoolFit(pool, free, "disabled")
    problem = capability_problem(pool, share_type)
    if problem:
        return PoolFit(pool, free, problem)
    if az and pool.availability_zone != az:
        return PoolFit(pool, free, f"in zone {pool.availability_zone}, not {az}")
    if free < size_gb:
        return PoolFit(pool, free, f"{free} GiB free, {size_gb} GiB needed")
    return PoolFit(pool, free, None)


def rank_pools(
    session: Session,
    share_type: ShareType,
    size_gb: int,
    *,
    az: str | None = None,
    exclude: Iterable[str] = (),
) -> list[PoolFit]:
    """Every pool with its verdict; fitting pools first, most free capacity first."""
    allocated = allocated_gb(session)
    skip = set(exclude)
    fits = [
        fit(p, share_type, size_gb, p.capacity_gb - allocated.get(p.name, 0), az)
        for p in session.scalars(select(Pool).order_by(Pool.name))
        if p.name not in skip
    ]
    return sorted(fits, key=lambda f: (f.reason is not None, -f.free_gb, f.pool.name))


def pick_pool(
    session: Session,
    share_type: ShareType,
    size_gb: int,
    *,
    az: str | None = None,
    exclude: Iterable[str] = (),
) -> Pool:
    ranked = rank_pools(session, share_type, size_gb, az=az, exclude=exclude)
    if ranked and ranked[0].reason is None:
        return ranked[0].pool
    why = "; ".join(f"{f.pool.name}: {f.reason}" for f in ranked) or "the inventory has no pools"
    raise CapacityError(f"no pool can hold a {size_gb} GiB share of type {share_type.name}: {why}")
