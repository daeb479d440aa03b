"""btrfs test filesystems: loop-mounted images with quotas, and removing a test's pool."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

BTRFS_IMAGE_SIZE = "3G"
"""Sparse images; the quota tests write a little over 1 GiB (the smallest share) into one."""


def mount_btrfs(image: Path, where: Path, *, quotas: bool = True) -> str:
    """mkfs + loop mount (+ quotas on); "" on success, else why not."""
    if os.geteuid() != 0:
        return "btrfs pools need root (mkfs, loop mounts, qgroups)"
    if shutil.which("mkfs.btrfs") is None or shutil.which("btrfs") is None:
        return "mkfs.btrfs/btrfs not found (apt-get install btrfs-progs)"
    where.mkdir(parents=True, exist_ok=True)
    steps = [
        ["truncate", "-s", BTRFS_IMAGE_SIZE, str(image)],
        ["mkfs.btrfs", "-q", "-f", str(image)],
        ["mount", "-o", "loop", str(image), str(where)],
        *([["btrfs", "quota", "enable", str(where)]] if quotas else []),
    ]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            return f"`{' '.join(cmd)}` failed: {proc.stderr.strip() or proc.returncode}"
    return ""


@contextmanager
def two_btrfs_mounts(base: Path) -> Iterator[tuple[Path, Path]]:
    """Two separate loop-mounted btrfs filesystems (quotas on) under `base`; skips the test
    where they cannot be made. Unmounted, and their images removed, afterwards."""
    mounted: list[Path] = []
    try:
        for name in ("a", "b"):
            why = mount_btrfs(base / f"{name}.img", base / name)
            if why:
                pytest.skip(f"no btrfs test filesystems: {why}")
            mounted.append(base / name)
        yield mounted[0], mounted[1]
    finally:
        for where in mounted:
            subprocess.run(["umount", str(where)], capture_output=True, check=False)
        for image in base.glob("*.img"):
            image.unlink()


def _subvolumes(root: Path) -> Iterator[Path]:
    """Subvolumes below `root`, not descending into them (the driver never nests its own)."""
    for entry in os.scandir(root):
        if entry.is_dir(follow_symlinks=False):
            path = Path(entry.path)
            if entry.inode() == 256:
                yield path
            else:
                yield from _subvolumes(path)


def remove_btrfs_pool(root: Path) -> None:
    """Every subvolume a test left in its pool (snapshots are read-only), then the directories."""
    if not root.is_dir():
        return
    for sub in list(_subvolumes(root)):
        for cmd in (
            ["property", "set", "-f", str(sub), "ro", "false"],
            ["subvolume", "delete", str(sub)],
        ):
            subprocess.run(["btrfs", *cmd], check=False, capture_output=True)
    shutil.rmtree(root.parent, ignore_errors=True)
