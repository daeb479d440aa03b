"""Helpers shared by the driver contract suites (plain functions; fixtures live in conftest)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from storage.drivers.base import PoolRef


@dataclass(frozen=True)
class PoolPair:
    layout: str
    source: PoolRef
    dest: PoolRef
    source_root: Path
    dest_root: Path


def localfs_pool(name: str, root: Path) -> PoolRef:
    root.mkdir(parents=True, exist_ok=True)
    return PoolRef(name=f"host@lfs#{name}", driver="localfs", url=root.as_uri())


def btrfs_pool(name: str, root: Path) -> PoolRef:
    root.mkdir(parents=True, exist_ok=True)
    return PoolRef(name=f"host@btrfs#{name}", driver="btrfs", url=root.as_uri())


def make_pool(driver: str, name: str, root: Path) -> PoolRef:
    return btrfs_pool(name, root) if driver == "btrfs" else localfs_pool(name, root)


def clone_tree(src: Path, dst: Path) -> None:
    """`cp -a` is identical under treecmp (bench README), so it seeds instances faithfully."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", "--", f"{src}/.", str(dst)], check=True)
