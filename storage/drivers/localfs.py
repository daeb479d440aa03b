"""Pools that are directories on this host. Lifecycle here; driver-assisted migration too."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import ClassVar

from fsspec.core import url_to_fs

from storage.drivers.base import Compatibility, DriverCapabilities, MigrationRef, PoolRef
from storage.errors import InvalidInputError, NotFoundError

SNAPSHOT_DIR = ".snapshots"


def pool_root(pool: PoolRef) -> Path:
    """The local directory behind a `localfs` pool URL (`file:///srv/a` or `/srv/a`)."""
    fs, root = url_to_fs(pool.url)
    if "file" not in fs.protocol and "local" not in fs.protocol:
        raise InvalidInputError(f"pool {pool.name}: localfs needs a file:// URL, got {pool.url!r}")
    return Path(root)


def _safe_child(base: Path, name: str) -> Path:
    """`base/name` for a single path component; anything else is refused (no `..`, no `/`)."""
    if not name or name in {".", ".."} or "/" in name or "\0" in name:
        raise InvalidInputError(f"invalid location name {name!r}")
    return base / name


class LocalFsDriver:
    capabilities: ClassVar[DriverCapabilities] = DriverCapabilities(
        snapshot_support=True, driver_assisted_migration=True
    )

    def __init__(self, pool: PoolRef) -> None:
        self.pool = pool
        self.root = pool_root(pool)

    def instance_path(self, location: str) -> Path:
        return _safe_child(self.root, location)

    def snapshot_path(self, location: str, snapshot_id: str) -> Path:
        return _safe_child(_safe_child(self.root / SNAPSHOT_DIR, location), snapshot_id)

    def instance_url(self, location: str) -> str:
        return str(self.instance_path(location))

    def create_instance(self, location: str) -> None:
        self.instance_path(location).mkdir(parents=True, exist_ok=True)

    def delete_instance(self, location: str) -> None:
        shutil.rmtree(self.instance_path(location), ignore_errors=True)
        shutil.rmtree(_safe_child(self.root / SNAPSHOT_DIR, location), ignore_errors=True)

    def export_locations(self, location: str) -> list[str]:
        host = str(self.pool.options.get("export_host", os.uname().nodename))
        return [f"{host}:{self.instance_path(location)}"]

    def create_snapshot(self, location: str, snapshot_id: str) -> None:
        src = self.instance_path(location)
        if not src.is_dir():
            raise NotFoundError(f"instance data {src} is missing on pool {self.pool.name}")
        dst = self.snapshot_path(location, snapshot_id)
        if dst.exists():
            return
        tmp = dst.with_name(dst.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, tmp, symlinks=True)
        tmp.rename(dst)

    def delete_snapshot(self, location: str, snapshot_id: str) -> None:
        shutil.rmtree(self.snapshot_path(location, snapshot_id), ignore_errors=True)

    def list_snapshots(self, location: str) -> list[str]:
        base = _safe_child(self.root / SNAPSHOT_DIR, location)
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if not p.name.endswith(".partial"))

    def migration_check_compatibility(self, source_location: str, dest: PoolRef) -> Compatibility:
        raise NotImplementedError("driver-assisted migration: see the drivers issue")

    def migration_start(self, ref: MigrationRef) -> None:
        raise NotImplementedError

    def migration_continue(self, ref: MigrationRef) -> bool:
        raise NotImplementedError

    def migration_complete(self, ref: MigrationRef) -> None:
        raise NotImplementedError

    def migration_cancel(self, ref: MigrationRef) -> None:
        raise NotImplementedError

    def migration_get_progress(self, ref: MigrationRef) -> dict[str, object]:
        raise NotImplementedError
