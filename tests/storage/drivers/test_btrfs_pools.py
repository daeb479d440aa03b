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
