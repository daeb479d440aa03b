"""Shares made straight in the database (as `sharemig` would have them) and read back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class ShareOnPool:
    share_id: str
    pool: str
    path: Path
    """The active instance's data directory (local and `faulty://` pools)."""


def local_path(url: str) -> Path:
    """The directory behind a local or `faulty://` instance URL."""
    return Path("/" + url.split("://")[-1].lstrip("/"))


def add_pool(name: str, root: Path, *, driver: str = "localfs", capacity_gb: int = 100) -> None:
    """The pool `host@backend#pool` at `root`, added (or replaced) in the current database."""
    from storage.db import session_scope
    from storage.models import Pool

    host, _, rest = name.partition("@")
    backend, _, pool = rest.partition("#")
    with session_scope() as s:
        s.merge(
            Pool(
                name=name,
                host=host,
                backend=backend,
                pool=pool,
                driver=driver,
                url=root.as_uri(),
                capacity_gb=capacity_gb,
                availability_zone="nova",
                options={},
                enabled=True,
            )
        )


def new_share(
    pool: str,
    *,
    project: str = "tests",
    size: int = 1,
    name: str | None = "t",
    snapshots: bool = True,
    db_url: str | None = None,
) -> ShareOnPool:
    """A share with an empty instance on `pool`, in the database of this test's settings (or
    `db_url`); `snapshots=False` gives it a share type without snapshot support."""
    from storage.catalog import create_share_type, get_share_type
    from storage.db import session_scope
    from storage.errors import NotFoundError
    from storage.pools import driver_for
    from storage.shares import active_instance, create_share

    with session_scope(db_url) as s:
        type_id = None
        if not snapshots:
            try:
                type_id = get_share_type(s, "no-snapshots").id
            except NotFoundError:
                type_id = create_share_type(
                    s, "no-snapshots", {"driver_handles_share_servers": "False"}
                ).id
        share = create_share(
            s, project_id=project, size=size, host=pool, name=name, share_type_id=type_id
        )
        url = driver_for(s, pool).instance_url(active_instance(s, share).location)
        return ShareOnPool(share.id, pool, local_path(url))


def write_paced_tree(root: Path, dirs: int) -> int:
    """`dirs` directories of ten 256 KiB files (d07/f004 holds bytes([7, 4]) repeated): under
    the session worker's bandwidth limit (prefect_service.BANDWIDTH) each 64-file batch takes
    seconds, so a cancel or a kill lands mid-copy however fast the machine. Returns the count."""
    for d in range(dirs):
        sub = root / f"d{d:02}"
        sub.mkdir()
        for f in range(10):
            (sub / f"f{f:03}").write_bytes(bytes([d, f]) * 131072)
    return dirs * 10


def share_row(share_id: str) -> dict[str, Any]:
    """What a client sees of the share: status, task_state, host, and its instances."""
    from storage.db import session_scope
    from storage.shares import get_share, instances

    with session_scope() as s:
        share = get_share(s, share_id)
        return {
            "status": share.status,
            "task_state": share.task_state,
            "host": share.host,
            "instances": [
                (i.id, i.pool_name, i.status, i.location) for i in instances(s, share_id)
            ],
        }


def migration_of(share_id: str) -> Any:
    """The share's latest migration row (None before its first)."""
    from sqlalchemy import select

    from storage.db import session_scope
    from storage.models import Migration

    with session_scope() as s:
        return s.scalars(
            select(Migration)
            .where(Migration.share_id == share_id)
            .order_by(Migration.created_at.desc())
        ).first()


def db_share(share_id: str) -> Callable[[], dict[str, Any]]:
    """A getter for `wait_task_state`: the share's row and its latest migration's error."""

    def get() -> dict[str, Any]:
        mig = migration_of(share_id)
        return {**share_row(share_id), "error": None if mig is None else mig.error}

    return get


def put_in_state(
    db_url: str,
    share_id: str,
    task_state: str | None,
    *,
    status: str | None = None,
    requested_action: str | None = None,
    dest_host: str = "sharemig@localfs#pool-b",
    **counters: Any,
) -> str:
    """Put a share where a migration would have taken it; returns the migration id.

    Only the rows a client can observe are written (share status/task_state, a migration
    row, active while busy, with `counters`); no flow run exists, which is what a run looks
    like before Prefect has picked it up."""
    from storage.db import session_scope
    from storage.migration_state import BUSY
    from storage.models import Migration
    from storage.shares import active_instance, get_share

    busy = task_state in BUSY
    with session_scope(db_url) as s:
        share = get_share(s, share_id)
        mig = Migration(
            share_id=share.id,
            source_instance_id=active_instance(s, share).id,
            dest_host=dest_host,
            active=busy,
            outcome=None if busy else task_state,
            requested_action=requested_action,
            **counters,
        )
        s.add(mig)
        share.task_state = task_state
        share.status = status or ("migrating" if busy else "available")
        s.flush()
        return str(mig.id)
