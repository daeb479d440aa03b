"""Pool lookups: a pool's driver, its allocated and free capacity."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from storage.drivers.base import PoolRef, ShareDriver
from storage.drivers.registry import get_driver
from storage.errors import NotFoundError
from storage.models import Migration, Pool, Share, ShareInstance
from storage.models.base import utcnow

# Instances that hold space on their pool (a migration destination reserves it up front).
# A `retained` instance (the rollback window, `storage.retention`) is charged until it expires.
_ALLOCATING = ("creating", "available", "migrating", "migrating_to", "error", "retained")


def pool_ref(pool: Pool) -> PoolRef:
    return PoolRef(name=pool.name, driver=pool.driver, url=pool.url, options=dict(pool.options))


def get_pool(session: Session, name: str) -> Pool:
    pool = session.get(Pool, name)
    if pool is None:
        raise NotFoundError(f"pool {name!r} is not in the inventory")
    return pool


def lock_pool(session: Session, name: str) -> Pool:
    """Take the pool's row lock for the rest of the transaction, then return the pool.

    Whoever checks free space and then creates an instance on a pool holds this first, so two
    transactions never both see the same free space and over-commit the pool. A write is the
    portable lock: a row lock on PostgreSQL, the database write lock on SQLite.
    """
    session.execute(
        update(Pool)
        .where(Pool.name == name)
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return get_pool(session, name)


def driver_for(session: Session, pool_name: str) -> ShareDriver:
    return get_driver(pool_ref(get_pool(session, pool_name)))


def allocated_gb(session: Session) -> dict[str, int]:
    """GiB allocated per pool: the sizes of the shares whose instances live there, plus the
    space reserved by admitted migrations whose destination instance does not exist yet (the
    reservation is taken with the 202 of `migration_start`, and ends with the migration)."""
    rows = session.execute(
        select(ShareInstance.pool_name, func.coalesce(func.sum(Share.size), 0))
        .join(Share, Share.id == ShareInstance.share_id)
        .where(ShareInstance.status.in_(_ALLOCATING))
        .group_by(ShareInstance.pool_name)
    )
    allocated = {name: int(total) for name, total in rows}
    reserved = session.execute(
        select(Migration.dest_host, func.coalesce(func.sum(Share.size), 0))
        .join(Share, Share.id == Migration.share_id)
        .where(
            Migration.active.is_(True),
            Migration.outcome.is_(None),
            Migration.dest_instance_id.is_(None),
        )
        .group_by(Migration.dest_host)
    )
    for name, total in reserved:
        allocated[name] = allocated.get(name, 0) + int(total)
    return allocated


def free_gb(session: Session, pool: Pool, allocated: dict[str, int] | None = None) -> int:
    allocated = allocated if allocated is not None else allocated_gb(session)
    return pool.capacity_gb - allocated.get(pool.name, 0)
