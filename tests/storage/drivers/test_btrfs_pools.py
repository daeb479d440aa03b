"""A btrfs pool in pools.yaml is checked where it is loaded: refusals name the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage import source_freeze
from storage.drivers.base import PoolRef
from storage.errors import FreezeUnavailableError, InventoryError
from storage.inventory import parse_inventory


def _yaml(url: Path) -> str:
    return (
        "pools:\n"
        "  - name: h@lfs#ok\n    driver: localfs\n    url: file:///srv/ok\n    capacity_gb: 1\n"
        f"  - name: h@btrfs#a\n    driver: btrfs\n    url: {url.as_uri()}\n    capacity_gb: 5\n"
    )


def _refusal(url: Path) -> str:
    with pytest.raises(InventoryError) as info:
        parse_inventory(_yaml(url), "/etc/sharemig/pools.yaml")
    return str(info.value)


def test_a_pool_on_btrfs_with_quotas_is_accepted(btrfs_mounts: tuple[Path, Path]) -> None:
    inv = parse_inventory(_yaml(btrfs_mounts[0]))
    assert [p.driver for p in inv.pools] == ["localfs", "btrfs"]


def test_a_pool_not_on_btrfs_is_refused(tmp_path: Path) -> None:
    message = _refusal(tmp_path)
    assert message.startswith("/etc/sharemig/pools.yaml:8: pools[1].url: btrfs pool refused")
    assert f"{tmp_path} is not on a btrfs filesystem" in message


def test_a_pool_without_quotas_is_refused(btrfs_without_quotas: Path) -> None:
    message = _refusal(btrfs_without_quotas)
    assert message.startswith("/etc/sharemig/pools.yaml:8: pools[1].url:")
    assert "quotas are unavailable" in message and "btrfs quota enable" in message


def test_a_read_only_pool_is_refused(btrfs_mounts: tuple[Path, Path], tmp_path: Path) -> None:
    pool = btrfs_mounts[0] / tmp_path.name
    pool.mkdir()
    try:
        source_freeze.freeze_dir(pool)  # a read-only bind mount over the pool directory
    except FreezeUnavailableError as exc:
        pytest.skip(f"cannot make a read-only mount here: {exc}")
    try:
        message = _refusal(pool)
    finally:
        source_freeze.lift_dir(pool)
        pool.rmdir()
    assert message.startswith("/etc/sharemig/pools.yaml:8: pools[1].url:")
    assert "is not writable by the service" in message


def test_a_missing_pool_directory_is_refused(btrfs_mounts: tuple[Path, Path]) -> None:
    assert "is not a directory" in _refusal(btrfs_mounts[0] / "no-such-pool")


def test_capacity_is_capped_at_the_filesystem_size(
    btrfs_mounts: tuple[Path, Path], db_url: str
) -> None:
    """pools.yaml promises 5000 GiB; the 3 GiB filesystem is what the scheduler sees."""
    from storage.db import session_scope, upgrade
    from storage.drivers.btrfs import BtrfsDriver
    from storage.drivers.registry import get_driver
    from storage.inventory import sync_inventory
    from storage.models import Pool

    text = _yaml(btrfs_mounts[0]).replace("capacity_gb: 5", "capacity_gb: 5000")
    upgrade(db_url)
    with session_scope(db_url) as s:
        sync_inventory(s, parse_inventory(text))
        pool = s.get(Pool, "h@btrfs#a")
        assert pool is not None
        drv = get_driver(PoolRef(pool.name, pool.driver, pool.url))
        assert isinstance(drv, BtrfsDriver)
        size, free = drv.pool_space()
        assert 0 < free <= size < 4 << 30
        assert pool.capacity_gb == size >> 30
        other = s.get(Pool, "h@lfs#ok")
        assert other is not None and other.capacity_gb == 1


def test_reclaim_leaves_no_stale_qgroup_of_a_deleted_share(
    btrfs_mounts: tuple[Path, Path], tmp_path: Path
) -> None:
    """A deleted subvolume's qgroup (and its snapshots') must not stay behind as `<stale>`:
    `qgroup show` would list one per share ever migrated or deleted."""
    import time

    from storage.drivers import btrfs_cli
    from storage.drivers.registry import get_driver
    from tests.kit.drivers import btrfs_pool

    drv = get_driver(btrfs_pool("q", btrfs_mounts[0] / tmp_path.name / "pool"))
    drv.create_instance("share-q", size_gib=1)
    drv.create_snapshot("share-q", "snap-1")
    drv.delete_instance("share-q")
    assert btrfs_cli.stale_qgroups(btrfs_mounts[0])  # what a bare `subvolume delete` leaves
    # The commit that reclaim forces wakes the cleaner; without it the qgroups would wait for
    # the next periodic commit (30 s) or, on older kernels, stay for ever.
    deadline = time.monotonic() + 5
    while True:
        drv.reclaim_space()
        stale = btrfs_cli.stale_qgroups(btrfs_mounts[0])
        if not stale or time.monotonic() > deadline:
            break
    assert stale == []


def test_a_revert_cut_between_its_renames_is_finished_by_the_retry(
    btrfs_mounts: tuple[Path, Path], tmp_path: Path
) -> None:
    """The state a crash between the two renames leaves: the live data moved to `.old`, the
    snapshot's copy still at `.reverting`. The share must not be missing for the retry."""
    import os

    from storage.drivers.registry import get_driver
    from tests.kit.drivers import btrfs_pool

    drv = get_driver(btrfs_pool("r", btrfs_mounts[0] / tmp_path.name / "pool"))
    drv.create_instance("share-r", size_gib=1)
    live = Path(drv.instance_url("share-r"))
    (live / "f").write_text("snapshotted\n")
    drv.create_snapshot("share-r", "snap-1")
    (live / "f").write_text("after the snapshot\n")
    drv.revert_to_snapshot("share-r", "snap-1")
    assert (live / "f").read_text() == "snapshotted\n"

    (live / "f").write_text("changed again\n")
    aside, old = live.with_name(".share-r.reverting"), live.with_name(".share-r.old")
    from storage.drivers import btrfs_cli

    btrfs_cli.snapshot(Path(drv.snapshot_path("share-r", "snap-1")), aside, readonly=False)
    os.rename(live, old)
    drv.revert_to_snapshot("share-r", "snap-1")
    assert (live / "f").read_text() == "snapshotted\n"
    assert not aside.exists() and not old.exists()
    assert btrfs_cli.qgroup_usage(live).limit == 1 << 30
