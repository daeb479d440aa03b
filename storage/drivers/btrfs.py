"""Pools on a mounted btrfs filesystem: an instance is a subvolume, its size a qgroup limit.

Snapshots are read-only snapshots beside the instance (`.snapshots/<location>/<id>`, the same
layout as localfs), created in O(1). Driver-assisted migration between btrfs pools is a
subvolume move on one filesystem and `btrfs send | receive` of the snapshot chain across
filesystems (`storage.drivers.btrfs_migration`).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import ClassVar

from storage import source_freeze
from storage.drivers import btrfs_cli
from storage.drivers import btrfs_migration as migration
from storage.drivers.base import (
    Compatibility,
    DriverCapabilities,
    MigrationRef,
    PoolRef,
    StopCheck,
)
from storage.drivers.localfs_paths import pool_root, safe_child, snapshots_dir
from storage.errors import InvalidInputError, InvalidStateError, NotFoundError

GiB = 1 << 30


class BtrfsDriver:
    capabilities: ClassVar[DriverCapabilities] = DriverCapabilities(
        snapshot_support=True,
        driver_assisted_migration=True,
        freeze_support=True,
        create_share_from_snapshot_support=True,
        revert_to_snapshot_support=True,
    )

    def __init__(self, pool: PoolRef) -> None:
        self.pool = pool
        self.root = pool_root(pool)

    @staticmethod
    def check_pool(pool: PoolRef) -> str | None:
        """Why this pool cannot serve (not btrfs, quotas off, not writable), or None."""
        try:
            return btrfs_cli.pool_problem(pool_root(pool))
        except InvalidInputError as exc:
            return str(exc)

    def pool_space(self) -> tuple[int, int]:
        """(size, free) bytes of the filesystem, as the filesystem reports them."""
        st = os.statvfs(self.root)
        return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize

    def instance_path(self, location: str) -> Path:
        return safe_child(self.root, location)

    def snapshot_path(self, location: str, snapshot_id: str) -> Path:
        return safe_child(snapshots_dir(self.root, location), snapshot_id)

    def instance_url(self, location: str) -> str:
        return str(self.instance_path(location))

    def export_locations(self, location: str) -> list[str]:
        host = str(self.pool.options.get("export_host", os.uname().nodename))
        return [f"{host}:{self.instance_path(location)}"]

    def create_instance(self, location: str, size_gib: int | None = None) -> None:
        path = self.instance_path(location)
        if not btrfs_cli.is_subvolume(path):
            if path.exists():
                raise InvalidStateError(f"{path} exists and is not a subvolume")
            btrfs_cli.create_subvolume(path)
        if size_gib is not None:
            btrfs_cli.set_limit(path, size_gib * GiB)

    def resize_instance(self, location: str, size_gib: int) -> None:
        """Manila's extend/shrink: the new qgroup limit (a shrink below usage fails writes)."""
        btrfs_cli.set_limit(self._existing(location), size_gib * GiB)

    def used_bytes(self, location: str) -> int:
        # qgroup numbers are per committed transaction: commit first, or recent writes are 0.
        path = self._existing(location)
        btrfs_cli.sync(path)
        return btrfs_cli.qgroup_usage(path).referenced

    def create_instance_from_snapshot(
        self, source_location: str, snapshot_id: str, location: str, size_gib: int
    ) -> None:
        """A writable snapshot of the snapshot: O(1), sharing every extent with it."""
        path = self.instance_path(location)
        if not btrfs_cli.is_subvolume(path):
            snap = self.snapshot_path(source_location, snapshot_id)
            if not btrfs_cli.is_subvolume(snap):
                raise NotFoundError(f"snapshot {snapshot_id} of {source_location} is missing")
            btrfs_cli.snapshot(snap, path, readonly=False)
        btrfs_cli.set_limit(path, size_gib * GiB)

    def delete_instance(self, location: str) -> None:
        path = self.instance_path(location)
        self.lift_freeze(location)
        btrfs_cli.delete_subvolume(path)
        snaps = snapshots_dir(self.root, location)
        if snaps.is_dir():
            for child in snaps.iterdir():
                btrfs_cli.delete_subvolume(child)
        with contextlib.suppress(FileNotFoundError):
            snaps.rmdir()
        migration.remove_leftovers(self.root, location)

    def reclaim_space(self) -> int:
        """`btrfs subvolume delete` is already O(1) for its caller and nothing waits aside:
        the filesystem's cleaner frees the extents. What is left is the deleted subvolumes'
        qgroups, which older kernels keep as `<stale>`; they are destroyed here."""
        btrfs_cli.clear_stale_qgroups(self.root)
        return 0

    def freeze_instance(self, location: str) -> None:
        """The subvolume's `ro` property: new writes, creates, renames fail with EROFS."""
        path = self._existing(location)
        if not btrfs_cli.subvolume_info(path).readonly:
            btrfs_cli.set_readonly(path, True)

    def lift_freeze(self, location: str) -> None:
        path = self.instance_path(location)
        if btrfs_cli.is_subvolume(path) and btrfs_cli.subvolume_info(path).readonly:
            btrfs_cli.set_readonly(path, False)

    def late_writes(self, location: str, since_ns: int) -> list[bytes]:
        # The ro property, like a read-only mount, does not revoke descriptors opened for
        # writing before it; the same ctime walk finds what they wrote.
        from storage.settings import get_settings

        return source_freeze.late_writes(
            self.instance_path(location),
            since_ns,
            entries_per_s=get_settings().walk_limit_entries,
        )

    def _existing(self, location: str) -> Path:
        path = self.instance_path(location)
        if not btrfs_cli.is_subvolume(path):
            raise NotFoundError(f"instance subvolume {path} is missing on pool {self.pool.name}")
        return path

    def create_snapshot(self, location: str, snapshot_id: str) -> None:
        src = self._existing(location)
        dst = self.snapshot_path(location, snapshot_id)
        if btrfs_cli.is_subvolume(dst):
            return
        btrfs_cli.snapshot(src, dst, readonly=True)

    def delete_snapshot(self, location: str, snapshot_id: str) -> None:
        btrfs_cli.delete_subvolume(self.snapshot_path(location, snapshot_id))

    def list_snapshots(self, location: str) -> list[str]:
        base = snapshots_dir(self.root, location)
        if not base.is_dir():
            return []
        # Read-only only: a receive still under way (a migration's) is writable until it ends.
        return sorted(
            p.name
            for p in base.iterdir()
            if btrfs_cli.is_subvolume(p) and btrfs_cli.subvolume_info(p).readonly
        )

    def revert_to_snapshot(self, location: str, snapshot_id: str) -> None:
        """Manila's revert: the instance becomes a writable snapshot of the snapshot, in O(1).

        Two renames swap it in: a crash between them leaves the new data at `.reverting`,
        which the retry puts in place; the old data goes last."""
        path = self.instance_path(location)
        aside, old = path.with_name(f".{location}.reverting"), path.with_name(f".{location}.old")
        if not btrfs_cli.is_subvolume(path) and btrfs_cli.is_subvolume(aside):
            os.rename(aside, path)
        path = self._existing(location)
        snap = self.snapshot_path(location, snapshot_id)
        if not btrfs_cli.is_subvolume(snap):
            raise NotFoundError(f"snapshot {snapshot_id} of {location} is missing")
        limit = btrfs_cli.qgroup_usage(path).limit
        for leftover in (aside, old):
            btrfs_cli.delete_subvolume(leftover)
        btrfs_cli.snapshot(snap, aside, readonly=False)
        btrfs_cli.set_limit(aside, limit)
        os.rename(path, old)
        os.rename(aside, path)
        btrfs_cli.delete_subvolume(old)

    def migration_check_compatibility(self, source_location: str, dest: PoolRef) -> Compatibility:
        return migration.check_compatibility(self.root, source_location, dest)

    def migration_start(self, ref: MigrationRef) -> None:
        migration.start(self.root, ref)

    def migration_continue(
        self, ref: MigrationRef, *, should_stop: StopCheck | None = None
    ) -> bool:
        return migration.continue_(self.root, ref, should_stop)

    def migration_complete(
        self, ref: MigrationRef, *, should_stop: StopCheck | None = None
    ) -> None:
        migration.complete(self.root, ref, should_stop)

    def migration_cancel(self, ref: MigrationRef) -> None:
        migration.cancel(self.root, ref)

    def migration_get_progress(self, ref: MigrationRef) -> dict[str, object]:
        return migration.progress(self.root, ref)
