"""Where a localfs pool keeps things: instance roots and snapshots beside them."""

from __future__ import annotations

from pathlib import Path

from fsspec.core import url_to_fs

from storage.drivers.base import PoolRef, check_location
from storage.errors import InvalidInputError

SNAPSHOT_DIR = ".snapshots"
DELETED_DIR = ".deleted"
"""Deleted instances wait here, moved aside in O(1), until `reclaim_space` frees them."""


def pool_root(pool: PoolRef) -> Path:
    """The local directory behind a `localfs` pool URL (`file:///srv/a` or `/srv/a`)."""
    fs, root = url_to_fs(pool.url)
    if "file" not in fs.protocol and "local" not in fs.protocol:
        raise InvalidInputError(f"pool {pool.name}: localfs needs a file:// URL, got {pool.url!r}")
    return Path(root)


def safe_child(base: Path, name: str) -> Path:
    """`base/name` for a single path component; anything else is refused (`check_location`)."""
    return base / check_location(name)


def snapshots_dir(root: Path, location: str) -> Path:
    """The directory holding every snapshot of the instance at `location`."""
    return safe_child(root / SNAPSHOT_DIR, location)


def same_driver_root(dest: PoolRef, driver: str) -> Path:
    """The destination pool's directory for a driver-assisted move between `driver` pools;
    `InvalidInputError` (the reason a compatibility check gives) for any other pool."""
    if dest.driver != driver:
        raise InvalidInputError(
            f"destination pool {dest.name} uses the {dest.driver} driver; "
            f"{driver} moves data only between {driver} pools"
        )
    return pool_root(dest)
