"""`up --demo-pools btrfs`: two loop-backed btrfs pools under the data dir, accepted by the
inventory's btrfs checks, reused by the next `up`."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.bootstrap import write_demo_inventory
from storage.demo_btrfs import add_demo_btrfs_pools
from storage.errors import PermanentError
from storage.inventory import load_inventory
from storage.settings import get_settings, reset_settings


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("btrfs demo pools need root (loop mounts)")
    monkeypatch.setenv("SHAREMIG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SHAREMIG_POOLS_FILE", raising=False)
    reset_settings()
    yield tmp_path / "home"
    for name in ("a", "b"):
        subprocess.run(["umount", str(tmp_path / "home" / "pools" / f"btrfs-{name}")], check=False)
    reset_settings()


def test_demo_btrfs_pools_are_made_once_and_pass_the_inventory_checks(home: Path) -> None:
    settings = get_settings()
    write_demo_inventory(settings)
    try:
        added = add_demo_btrfs_pools(settings)
    except PermanentError as exc:  # no loop devices or no btrfs in this kernel
        pytest.skip(f"cannot make btrfs demo pools here: {exc}")
    assert added == ["sharemig@btrfs#pool-a", "sharemig@btrfs#pool-b"]
    inventory = load_inventory(settings.pools_path)  # runs the btrfs pool checks
    drivers = {p.name: p.driver for p in inventory.pools}
    assert drivers["sharemig@btrfs#pool-a"] == drivers["sharemig@btrfs#pool-b"] == "btrfs"
    assert drivers["sharemig@localfs#pool-a"] == "localfs"
    # A second `up` reuses the mounted filesystems and adds nothing.
    assert add_demo_btrfs_pools(settings) == []
    assert len(load_inventory(settings.pools_path).pools) == len(inventory.pools)
