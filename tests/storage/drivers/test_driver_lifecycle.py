"""Lifecycle contract: every driver, same tests (instances, exports, snapshots, capabilities)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from storage.drivers.base import PoolRef, ShareDriver
from storage.drivers.registry import DRIVERS, driver_class, get_driver
from storage.errors import InvalidInputError, InvalidStateError, NotFoundError
from tests.kit.btrfs import remove_btrfs_pool
from tests.kit.drivers import btrfs_pool, localfs_pool, make_pool


@pytest.fixture(params=["localfs", "btrfs", "fsspec-file", "fsspec-memory"])
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ShareDriver]:
    if request.param == "localfs":
        pool = localfs_pool("a", tmp_path / "pool")
    elif request.param == "btrfs":
        fs_a, _ = request.getfixturevalue("btrfs_mounts")
        pool = btrfs_pool("a", fs_a / tmp_path.name / "pool")
    elif request.param == "fsspec-file":
        (tmp_path / "obj").mkdir()
        pool = PoolRef("host@obj#file", "fsspec", (tmp_path / "obj").as_uri())
    else:
        pool = PoolRef("host@obj#mem", "fsspec", f"memory://pool-{uuid.uuid4().hex}")
    drv = get_driver(pool)
    yield drv
    if request.param == "btrfs":
        remove_btrfs_pool(Path(pool.url.removeprefix("file://")))
    mem = fsspec.filesystem("memory")
    if request.param == "fsspec-memory" and mem.exists(pool.url.removeprefix("memory://")):
        mem.rm(pool.url.removeprefix("memory://"), recursive=True)


def _fs(drv: ShareDriver, location: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, path = fsspec.core.url_to_fs(drv.instance_url(location))
    return fs, path


def _write(drv: ShareDriver, location: str, name: str, data: bytes) -> None:
    fs, root = _fs(drv, location)
    with fs.open(f"{root}/{name}", "wb") as fh:
        fh.write(data)


def _read(drv: ShareDriver, location: str, name: str) -> bytes:
    fs, root = _fs(drv, location)
    with fs.open(f"{root}/{name}", "rb") as fh:
        data: bytes = fh.read()
    return data


def test_registry_knows_every_driver_and_refuses_others() -> None:
    assert set(DRIVERS) == {"localfs", "fsspec", "btrfs"}
    for name in DRIVERS:
        assert driver_class(name).capabilities is not None
    with pytest.raises(InvalidInputError, match="known drivers: btrfs, fsspec, localfs"):
        driver_class("nfs-magic")


def test_driver_satisfies_the_protocol(driver: ShareDriver) -> None:
    assert isinstance(driver, ShareDriver)


def test_instance_create_is_idempotent_and_holds_data(driver: ShareDriver) -> None:
    driver.create_instance("share-1")
    _write(driver, "share-1", "hello.txt", b"hello")
    driver.create_instance("share-1")  # a retried create keeps what is there
    assert _read(driver, "share-1", "hello.txt") == b"hello"
    fs, root = _fs(driver, "share-1")
    assert fs.isdir(root)


def test_instances_are_separate(driver: ShareDriver) -> None:
    driver.create_instance("share-1")
    driver.create_instance("share-2")
    _write(driver, "share-1", "f", b"one")
    _write(driver, "share-2", "f", b"two")
    assert _read(driver, "share-1", "f") == b"one"
    driver.delete_instance("share-2")
    assert _read(driver, "share-1", "f") == b"one"


def test_delete_removes_data_and_is_idempotent(driver: ShareDriver) -> None:
    driver.create_instance("share-1")
    _write(driver, "share-1", "f", b"x")
    driver.delete_instance("share-1")
    fs, root = _fs(driver, "share-1")
    assert not fs.exists(root)
    driver.delete_instance("share-1")
    driver.delete_instance("never-created")


def test_a_deleted_instance_is_gone_at_once_and_its_space_reclaimed_later(
    driver: ShareDriver,
) -> None:
    """Delete takes the data out of service (O(1) where the pool can move it aside); reclaim
    frees it; the location can be used again meanwhile and other instances are untouched."""
    for name in ("share-1", "share-2"):
        driver.create_instance(name)
        _write(driver, name, "f", name.encode())
    driver.delete_instance("share-1")
    fs, root = _fs(driver, "share-1")
    assert not fs.exists(root)
    driver.create_instance("share-1")
    _write(driver, "share-1", "f", b"new")
    freed = driver.reclaim_space()
    assert driver.reclaim_space() == 0  # nothing left to free
    assert _read(driver, "share-1", "f") == b"new"
    assert _read(driver, "share-2", "f") == b"share-2"
    if driver.pool.driver == "localfs":
        assert freed == 1  # the instance moved aside; it had no snapshots or journal
        assert not any((Path(root).parent / ".deleted").iterdir())
    else:
        # Deleted at once: no O(1) move on an object store; btrfs deletes a subvolume in O(1)
        # and frees its extents in the background.
        assert freed == 0


def test_export_locations_name_the_instance(driver: ShareDriver) -> None:
    driver.create_instance("share-1")
    exports = driver.export_locations("share-1")
    assert exports
    assert all("share-1" in path for path in exports)
    assert driver.export_locations("share-2") != exports


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "../escape", ".snapshots"])
def test_location_names_cannot_escape_the_pool(driver: ShareDriver, bad: str) -> None:
    with pytest.raises(InvalidInputError):
        driver.create_instance(bad)


def test_snapshots_follow_declared_capability(driver: ShareDriver) -> None:
    driver.create_instance("share-1")
    _write(driver, "share-1", "f", b"before")
    if not driver.capabilities.snapshot_support:
        with pytest.raises(InvalidStateError, match="no snapshot support"):
            driver.create_snapshot("share-1", "snap-1")
        assert driver.list_snapshots("share-1") == []
        return
    driver.create_snapshot("share-1", "snap-1")
    driver.create_snapshot("share-1", "snap-1")  # idempotent
    _write(driver, "share-1", "f", b"after")
    driver.create_snapshot("share-1", "snap-2")
    assert driver.list_snapshots("share-1") == ["snap-1", "snap-2"]
    assert driver.list_snapshots("share-2") == []
    # A snapshot is a point-in-time copy: later writes to the instance do not reach it.
    snap_root = Path(driver.instance_url("share-1")).parent / ".snapshots" / "share-1"
    assert (snap_root / "snap-1" / "f").read_bytes() == b"before"
    assert (snap_root / "snap-2" / "f").read_bytes() == b"after"
    driver.delete_snapshot("share-1", "snap-1")
    driver.delete_snapshot("share-1", "snap-1")
    assert driver.list_snapshots("share-1") == ["snap-2"]
    driver.delete_instance("share-1")
    assert driver.list_snapshots("share-1") == []


def test_snapshot_of_missing_instance_is_not_found(driver: ShareDriver) -> None:
    if not driver.capabilities.snapshot_support:
        pytest.skip("driver has no snapshots")
    with pytest.raises(NotFoundError):
        driver.create_snapshot("share-missing", "snap-1")


def test_capabilities_match_compatibility_answers(driver: ShareDriver, tmp_path: Path) -> None:
    """A driver that declares no driver-assisted migration never reports itself compatible;
    one that does accepts a pool of its own kind and refuses the others."""
    driver.create_instance("share-1")
    own = driver.pool.driver if driver.pool.driver != "fsspec" else "localfs"
    own_root = Path(driver.instance_url("share-1")).parent.parent / "other-pool"
    targets = [
        make_pool(own, "z", own_root if own == "btrfs" else tmp_path / "other-localfs"),
        PoolRef("host@obj#z", "fsspec", (tmp_path / "other-obj").as_uri()),
    ]
    answers = [driver.migration_check_compatibility("share-1", t) for t in targets]
    if not driver.capabilities.driver_assisted_migration:
        assert not any(a.compatible for a in answers)
        assert all(a.reason for a in answers)
    else:
        assert answers[0].compatible
        assert not answers[1].compatible
        assert own in answers[1].reason


def test_used_bytes_resize_and_share_from_snapshot(driver: ShareDriver) -> None:
    """What extend/shrink and create-from-snapshot ask of a driver, as its capabilities say."""
    driver.create_instance("inst-s", size_gib=1)
    _write(driver, "inst-s", "f.bin", b"x" * 300_000)
    assert driver.used_bytes("inst-s") >= 300_000
    driver.resize_instance("inst-s", 2)
    assert _read(driver, "inst-s", "f.bin") == b"x" * 300_000
    if not driver.capabilities.create_share_from_snapshot_support:
        with pytest.raises(InvalidStateError):
            driver.create_instance_from_snapshot("inst-s", "snap-x", "inst-c", 2)
        return
    driver.create_snapshot("inst-s", "snap-1")
    _write(driver, "inst-s", "f.bin", b"changed")
    driver.create_instance_from_snapshot("inst-s", "snap-1", "inst-c", 2)
    driver.create_instance_from_snapshot("inst-s", "snap-1", "inst-c", 2)  # idempotent
    assert _read(driver, "inst-c", "f.bin") == b"x" * 300_000
    _write(driver, "inst-c", "new.txt", b"writable")  # a share, not a read-only snapshot
    assert _read(driver, "inst-s", "f.bin") == b"changed"
    with pytest.raises(NotFoundError):
        driver.create_instance_from_snapshot("inst-s", "no-such-snap", "inst-d", 2)
