"""Pools that are directories on this host: instance lifecycle, snapshots, driver migration."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import ClassVar

from storage import source_freeze
from storage.drivers import localfs_migration as migration
from storage.drivers.base import (
    Compatibility,
    DriverCapabilities,
    MigrationRef,
    PoolRef,
    StopCheck,
)
from storage.drivers.localfs_paths import DELETED_DIR, pool_root, safe_child, snapshots_dir
from storage.drivers.localfs_sync import allocated_bytes, snapshot_tree
from storage.errors import InvalidStateError, NotFoundError

__all__ = ["LocalFsDriver", "pool_root"]


class LocalFsDriver:
    capabilities: ClassVar[DriverCapabilities] = DriverCapabilities(
        snapshot_support=True,
        driver_assisted_migration=True,
        freeze_support=True,
        create_share_from_snapshot_support=True,
    )

    def __init__(self, pool: PoolRef) -> None:
        self.pool = pool
        self.root = pool_root(pool)

    def instance_path(self, location: str) -> Path:
        return safe_child(self.root, location)

    def snapshot_path(self, location: str, snapshot_id: str) -> Path:
        return safe_child(snapshots_dir(self.root, location), snapshot_id)

    def instance_url(self, location: str) -> str:
        return str(self.instance_path(location))

    def freeze_instance(self, location: str) -> None:
        source_freeze.freeze_dir(self.instance_path(location))

    def lift_freeze(self, location: str) -> None:
        source_freeze.lift_dir(self.instance_path(location))

    def late_writes(self, location: str, since_ns: int) -> list[bytes]:
        from storage.settings import get_settings

        return source_freeze.late_writes(
            self.instance_path(location),
            since_ns,
            entries_per_s=get_settings().walk_limit_entries,
        )

    def create_instance(self, location: str, size_gib: int | None = None) -> None:
        self.instance_path(location).mkdir(parents=True, exist_ok=True)

    def resize_instance(self, location: str, size_gib: int) -> None:
        """A directory has no quota of its own: the share's size is the limit callers keep
        (a shrink is refused below `used_bytes`), so there is nothing to change on disk."""

    def used_bytes(self, location: str) -> int:
        return allocated_bytes(self.instance_path(location))

    def create_instance_from_snapshot(
        self, source_location: str, snapshot_id: str, location: str, size_gib: int
    ) -> None:
        dst = self.instance_path(location)
        if dst.exists():
            return
        snap = self.snapshot_path(source_location, snapshot_id)
        if not snap.is_dir():
            raise NotFoundError(f"snapshot {snapshot_id} of {source_location} is missing")
        tmp = dst.with_name(f".{dst.name}.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        snapshot_tree(snap, tmp)
        tmp.rename(dst)

    def delete_instance(self, location: str) -> None:
        self.lift_freeze(location)
        parts = (
            self.instance_path(location),
            snapshots_dir(self.root, location),
            safe_child(self.root / migration.JOURNAL_DIR, location),
        )
        deleted = self.root / DELETED_DIR
        for part in parts:
            if not part.exists() and not part.is_symlink():
                continue
            deleted.mkdir(exist_ok=True)
            try:
                part.rename(deleted / uuid.uuid4().hex)
            except OSError:  # a mount point, or another filesystem: delete it here and now
                shutil.rmtree(part, ignore_errors=True)

    def reclaim_space(self) -> int:
        deleted = self.root / DELETED_DIR
        if not deleted.is_dir():
            return 0
        freed = 0
        for entry in deleted.iterdir():
            shutil.rmtree(entry, ignore_errors=True)
            freed += 1
        return freed

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
        snapshot_tree(src, tmp)
        tmp.rename(dst)

    def delete_snapshot(self, location: str, snapshot_id: str) -> None:
        shutil.rmtree(self.snapshot_path(location, snapshot_id), ignore_errors=True)

    def revert_to_snapshot(self, location: str, snapshot_id: str) -> None:
        raise InvalidStateError(
            f"pool {self.pool.name} ({self.pool.driver}) cannot revert an instance in place"
        )

    def list_snapshots(self, location: str) -> list[str]:
        base = snapshots_dir(self.root, location)
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if not p.name.endswith(".partial"))

    def migration_check_compatibility(self, source_location: str, dest: PoolRef) -> Compatibility:
        return migration.check_compatibility(self.root, source_location, dest)

    def migration_start(self, ref: MigrationRef) -> None:
        migration.start(self.root, ref)

    def migration_continue(
        self, ref: MigrationRef, *, should_stop: StopCheck | None = None
    ) -> bool:
        return migration.continue_(self.root, ref, should_stop, ref.db_url)

    def migration_complete(
        self, ref: MigrationRef, *, should_stop: StopCheck | None = None
    ) -> None:
        migration.complete(self.root, ref, should_stop, ref.db_url)

    def migration_cancel(self, ref: MigrationRef) -> None:
        migration.cancel(self.root, ref, ref.db_url)

    def migration_get_progress(self, ref: MigrationRef) -> dict[str, object]:
        return migration.progress(self.root, ref, ref.db_url)
