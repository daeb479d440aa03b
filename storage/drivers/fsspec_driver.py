"""Generic driver for any fsspec filesystem. Never driver-assisted: host-assisted is its path."""

from __future__ import annotations

from typing import Any, ClassVar

import fsspec
from fsspec.core import url_to_fs

from storage.drivers.base import (
    Compatibility,
    DriverCapabilities,
    MigrationRef,
    PoolRef,
    StopCheck,
    check_location,
)
from storage.errors import InvalidStateError


class FsspecDriver:
    """Instances are directories (prefixes) under the pool URL; no snapshots, no migration hooks.

    The scheduler keeps share types that ask for snapshots off these pools, so shares here have
    none and the host-assisted rules of the contract always apply.
    """

    capabilities: ClassVar[DriverCapabilities] = DriverCapabilities(
        snapshot_support=False, driver_assisted_migration=False
    )

    def __init__(self, pool: PoolRef) -> None:
        self.pool = pool
        fs, root = url_to_fs(pool.url, skip_instance_cache=True, use_listings_cache=False)
        self.fs: fsspec.AbstractFileSystem = fs
        self.root: str = root.rstrip("/")

    def _path(self, location: str) -> str:
        return f"{self.root}/{check_location(location)}"

    def _protocol(self) -> str:
        proto: Any = self.fs.protocol
        return str(proto[0] if isinstance(proto, tuple | list) else proto)

    def instance_url(self, location: str) -> str:
        proto = self._protocol()
        path = self._path(location)
        return path if proto in {"file", "local"} else f"{proto}://{path.lstrip('/')}"

    def freeze_instance(self, location: str) -> None:
        """An fsspec pool (object store, remote filesystem) cannot refuse its clients' writes;
        the migration says so in its log and relies on the final sync instead."""

    def lift_freeze(self, location: str) -> None:
        """Nothing was frozen (see `freeze_instance`)."""

    def late_writes(self, location: str, since_ns: int) -> list[bytes]:
        return []

    def create_instance(self, location: str, size_gib: int | None = None) -> None:
        self.fs.makedirs(self._path(location), exist_ok=True)

    def resize_instance(self, location: str, size_gib: int) -> None:
        """An fsspec pool enforces no size; the share's size is bookkeeping here."""

    def used_bytes(self, location: str) -> int:
        path = self._path(location)
        return int(self.fs.du(path)) if self.fs.exists(path) else 0

    def create_instance_from_snapshot(
        self, source_location: str, snapshot_id: str, location: str, size_gib: int
    ) -> None:
        raise InvalidStateError(
            f"pool {self.pool.name} ({self.pool.driver}) has no snapshots to create a share from"
        )

    def delete_instance(self, location: str) -> None:
        # An object store has no O(1) move: the data is removed here.
        if self.fs.exists(self._path(location)):
            self.fs.rm(self._path(location), recursive=True)

    def reclaim_space(self) -> int:
        return 0

    def export_locations(self, location: str) -> list[str]:
        return [self.instance_url(location)]

    def create_snapshot(self, location: str, snapshot_id: str) -> None:
        raise InvalidStateError(
            f"pool {self.pool.name} ({self.pool.driver}) has no snapshot support"
        )

    def delete_snapshot(self, location: str, snapshot_id: str) -> None:
        raise InvalidStateError(
            f"pool {self.pool.name} ({self.pool.driver}) has no snapshot support"
        )

    def revert_to_snapshot(self, location: str, snapshot_id: str) -> None:
        raise InvalidStateError(
            f"pool {self.pool.name} ({self.pool.driver}) cannot revert an instance in place"
        )

    def list_snapshots(self, location: str) -> list[str]:
        return []

    def migration_check_compatibility(self, source_location: str, dest: PoolRef) -> Compatibility:
        return Compatibility(
            compatible=False,
            reason=f"pool {self.pool.name} uses the fsspec driver, which never moves data itself",
        )

    def _refuse(self) -> None:
        raise InvalidStateError("the fsspec driver has no driver-assisted migration")

    def migration_start(self, ref: MigrationRef) -> None:
        self._refuse()

    def migration_continue(
        self, ref: MigrationRef, *, should_stop: StopCheck | None = None
    ) -> bool:
        self._refuse()
        return False

    def migration_complete(
        self, ref: MigrationRef, *, should_stop: StopCheck | None = None
    ) -> None:
        self._refuse()

    def migration_cancel(self, ref: MigrationRef) -> None:
        """Nothing was ever started here, so there is nothing to undo (idempotent cleanup)."""

    def migration_get_progress(self, ref: MigrationRef) -> dict[str, object]:
        self._refuse()
        return {}
