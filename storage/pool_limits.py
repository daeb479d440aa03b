"""Per-pool limits from `pools.yaml`: which pools a migration touches and what they allow.

A migration reads from its source pool and writes to its destination pool; both pools'
`max_concurrent_migrations` and `bandwidth_limit_bytes` apply to it. The limits are enforced
elsewhere (`flows.pool_slots`: Prefect global concurrency limits; `storage.mover.pool_budget`:
a token bucket in the database); this module only says what they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import xxhash
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from storage import migration_state as state
from storage.db import session_scope
from storage.errors import NotFoundError
from storage.migration_lifecycle import load_migration
from storage.models import Migration, Pool, Share, ShareInstance
from storage.mover.pool_budget import BudgetSpec


@dataclass(frozen=True)
class PoolLimit:
    pool: str
    max_concurrent_migrations: int | None
    bandwidth_limit_bytes: int | None

    @property
    def slot_name(self) -> str:
        """The pool's global concurrency limit in Prefect. Pool names hold `@` and `#`, which
        do not survive a URL path; the hash keeps two names that sanitise alike apart."""
        plain = re.sub(r"[^A-Za-z0-9_-]+", "-", self.pool).strip("-")
        return f"sharemig-pool-{plain}-{xxhash.xxh32_hexdigest(self.pool.encode())}"


def migration_pools(migration_id: str, *, db_url: str | None = None) -> list[PoolLimit]:
    """The pools a migration reads from and writes to (source first), with their limits."""
    with session_scope(db_url) as s:
        mig = load_migration(s, migration_id)
        source = s.get(ShareInstance, mig.source_instance_id)
        names = [source.pool_name] if source is not None else []
        if mig.dest_host not in names:
            names.append(mig.dest_host)
        limits = []
        for name in names:
            pool = s.get(Pool, name)
            if pool is not None:
                limits.append(
                    PoolLimit(name, pool.max_concurrent_migrations, pool.bandwidth_limit_bytes)
                )
        return limits


def _moving_on(session: Session, pool: str, other_than: str) -> int:
    """Active migrations reading from or writing to `pool` that are past their start and not
    waiting for approval: the ones that hold the pool's slots."""
    idle = [s.value for s in state.STARTING | state.PHASE1_DONE]
    return int(
        session.scalar(
            select(func.count(Migration.id))
            .join(Share, Share.id == Migration.share_id)
            .join(ShareInstance, ShareInstance.id == Migration.source_instance_id, isouter=True)
            .where(
                Migration.active.is_(True),
                Migration.outcome.is_(None),
                Migration.id != other_than,
                Share.task_state.not_in(idle),
                or_(Migration.dest_host == pool, ShareInstance.pool_name == pool),
            )
        )
        or 0
    )


def queued_on(session: Session, migration: Migration) -> list[str]:
    """Pools whose `max_concurrent_migrations` a starting migration is waiting behind (as
    the database sees it; Prefect's slots are the enforcement)."""
    source = session.get(ShareInstance, migration.source_instance_id)
    names = {migration.dest_host, *([source.pool_name] if source else [])}
    full = []
    for name in sorted(names):
        pool = session.get(Pool, name)
        limit = pool.max_concurrent_migrations if pool is not None else None
        if limit and _moving_on(session, name, migration.id) >= limit:
            full.append(f"{name} ({limit})")
    return full


def migration_budget(migration_id: str, *, db_url: str | None = None) -> tuple[BudgetSpec, ...]:
    """The shared bandwidth budgets of the pools a migration touches (none when it has no
    row: a driver exercised on its own)."""
    try:
        pools = migration_pools(migration_id, db_url=db_url)
    except NotFoundError:
        return ()
    return tuple(
        BudgetSpec(p.pool, p.bandwidth_limit_bytes) for p in pools if p.bandwidth_limit_bytes
    )
