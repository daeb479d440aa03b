"""The share-driver protocol: instance lifecycle, snapshots, exports and the migration hooks.

In the spirit of Manila's `ShareDriver.migration_*` methods. A driver object serves one pool;
it gets plain data (`PoolRef`, locations, ids), never sessions or live objects of the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

from storage.errors import InvalidInputError

StopCheck = Callable[[], bool]
"""Polled by long operations at safe points; True means stop (raise `CancelledError`)."""


def check_location(name: str) -> str:
    """A location (or snapshot id) is one path component of the driver's choosing.

    Refused: empty, `/`, NUL, and leading dots (`..` escapes; `.snapshots`, `.migrations` are
    the drivers' own).
    """
    if not name or name.startswith(".") or "/" in name or "\0" in name:
        raise InvalidInputError(f"invalid location name {name!r}")
    return name


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
    freeze_support: bool = False
    """The pool can refuse writes to an instance while reads go on (`freeze_instance`)."""
    create_share_from_snapshot_support: bool = False
    """`create_instance_from_snapshot` works (Manila's pool capability of the same name)."""
    revert_to_snapshot_support: bool = False
    """The pool can put an instance back to a snapshot in place, in O(1) (`revert_to_snapshot`)."""


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
    """Everything a driver needs about one driver-assisted migration.

    The hooks are called on the *source* pool's driver. The destination instance
    (`dest_location` on `dest_pool`) has already been created, empty, by the caller.
    `snapshot_ids` are the share's snapshots the caller knows about; each must exist beside the
    source instance. `db_url` is the database a driver may keep durable progress in.
    """

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

    def create_instance(self, location: str, size_gib: int | None = None) -> None:
        """Create the instance's (empty) data root. Idempotent.

        `size_gib` is the share's size: a driver that can enforce it (btrfs: a qgroup limit)
        makes writes past it fail with EDQUOT; the others ignore it.
        """

    def resize_instance(self, location: str, size_gib: int) -> None:
        """Manila's extend/shrink: enforce the new size where the driver enforces sizes."""

    def used_bytes(self, location: str) -> int:
        """Bytes the instance's data holds now (what a shrink must not go below)."""

    def create_instance_from_snapshot(
        self, source_location: str, snapshot_id: str, location: str, size_gib: int
    ) -> None:
        """A new instance at `location` holding the snapshot's data. Idempotent.

        Only called where `capabilities.create_share_from_snapshot_support` is True; the
        snapshot belongs to the instance at `source_location` on this same pool."""

    def delete_instance(self, location: str) -> None:
        """Take the instance's data and snapshots out of the pool. Idempotent (absent is fine).

        Where the pool can, this only moves them aside (O(1), so a switchover does not wait on
        deleting a million files); `reclaim_space` then frees what was moved aside."""

    def reclaim_space(self) -> int:
        """Free what `delete_instance` moved aside; returns how many instances' worth.
        Idempotent, and safe while other instances of the pool are in use."""

    def instance_url(self, location: str) -> str:
        """fsspec URL of the instance's data root (what the data mover reads/writes)."""

    def export_locations(self, location: str) -> list[str]:
        """Paths or URLs a client would mount/open, preferred first."""

    def freeze_instance(self, location: str) -> None:
        """Refuse writes to the instance for every client, reads unchanged. Idempotent.
        A no-op where `capabilities.freeze_support` is False."""

    def lift_freeze(self, location: str) -> None:
        """Make the instance writable again. Idempotent (not frozen is fine)."""

    def late_writes(self, location: str, since_ns: int) -> list[bytes]:
        """Paths changed after `since_ns` (a writer that opened a file before the freeze)."""

    def create_snapshot(self, location: str, snapshot_id: str) -> None: ...

    def delete_snapshot(self, location: str, snapshot_id: str) -> None: ...

    def revert_to_snapshot(self, location: str, snapshot_id: str) -> None:
        """Make the instance's data the snapshot's, atomically (a crash leaves the one or the
        other, and a retry finishes). `InvalidStateError` where
        `capabilities.revert_to_snapshot_support` is False."""

    def list_snapshots(self, location: str) -> list[str]: ...

    def migration_check_compatibility(
        self, source_location: str, dest: PoolRef
    ) -> Compatibility: ...

    def migration_start(self, ref: MigrationRef) -> None:
        """Begin phase 1 (cheap; the work happens in `migration_continue`). Idempotent."""

    def migration_continue(
        self, ref: MigrationRef, *, should_stop: StopCheck | None = None
    ) -> bool:
        """Advance phase 1; True once phase 1 is done. Resumable after a crash or a stop.

        May block while it works; `should_stop` is polled and raises `CancelledError`.
        """

    def migration_complete(
        self, ref: MigrationRef, *, should_stop: StopCheck | None = None
    ) -> None:
        """Final sync and switch: afterwards the data (and snapshots) live at the destination.

        Idempotent: re-running after a crash finishes the switch. The source instance is left
        for the caller to delete once the database points at the destination.
        """

    def migration_cancel(self, ref: MigrationRef) -> None:
        """Remove everything the migration created; the source stays as it was. Idempotent."""

    def migration_get_progress(self, ref: MigrationRef) -> dict[str, object]:
        """`{"total_progress": int 0-100, never decreasing, ...driver extras}`."""
