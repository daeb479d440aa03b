"""The share-driver protocol: instance lifecycle, snapshots, exports and the migration hooks.

In the spirit of Manila's `ShareDriver.migration_*` methods. A driver object serves one pool;
it gets plain data (`PoolRef`, locations, ids), never sessions or live objects of the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable


@dataclass(frozen=True)
class PoolRef:
    """What a driver needs to know about a pool (copied out of the `pools` row)."""

    name: str
    driver: str
    url: str
    options: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class DriverCapabilities:
    """Declared as data so callers never need `isinstance` checks."""

    snapshot_support: bool
    driver_assisted_migration: bool


@dataclass(frozen=True)
class Compatibility:
    """The driver's answer to "can you move this share to that pool yourself?"."""

    compatible: bool
    writable: bool = False
    nondisruptive: bool = False
    preserve_metadata: bool = False
    preserve_snapshots: bool = False
    reason: str = ""


@dataclass(frozen=True)
class MigrationRef:
    """Everything a driver needs about one driver-assisted migration."""

    migration_id: str
    source_location: str
    dest_pool: PoolRef
    dest_location: str
    snapshot_ids: tuple[str, ...] = ()
    db_url: str | None = None


@runtime_checkable
class ShareDriver(Protocol):
    capabilities: ClassVar[DriverCapabilities]
    pool: PoolRef

    def create_instance(self, location: str) -> None:
        """Create the instance's (empty) data root. Idempotent."""

    def delete_instance(self, location: str) -> None:
        """Remove the instance's data and snapshots. Idempotent (absent is fine)."""

    def instance_url(self, location: str) -> str:
        """fsspec URL of the instance's data root (what the data mover reads/writes)."""

    def export_locations(self, location: str) -> list[str]:
        """Paths or URLs a client would mount/open, preferred first."""

    def create_snapshot(self, location: str, snapshot_id: str) -> None: ...

    def delete_snapshot(self, location: str, snapshot_id: str) -> None: ...

    def list_snapshots(self, location: str) -> list[str]: ...

    def migration_check_compatibility(
        self, source_location: str, dest: PoolRef
    ) -> Compatibility: ...

    def migration_start(self, ref: MigrationRef) -> None: ...

    def migration_continue(self, ref: MigrationRef) -> bool:
        """Advance phase 1; True once phase 1 is done."""

    def migration_complete(self, ref: MigrationRef) -> None:
        """Final sync and switch: afterwards the data lives at `ref.dest_location`."""

    def migration_cancel(self, ref: MigrationRef) -> None:
        """Remove everything the migration created; the source stays as it was. Idempotent."""

    def migration_get_progress(self, ref: MigrationRef) -> dict[str, object]:
        """`{"total_progress": int, ...driver extras}`."""
