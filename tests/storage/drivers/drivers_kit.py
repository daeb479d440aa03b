"""Helpers shared by the driver contract suites (plain functions; fixtures live in conftest)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from storage.drivers.base import PoolRef

# The bench kit sits beside the repository (../shared/bench) unless the environment says where.
BENCH_KIT = Path(
    os.environ.get("SHAREMIG_BENCH_KIT", Path(__file__).resolve().parents[4] / "shared" / "bench")
)


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


def kit_script(name: str) -> Path:
    script = BENCH_KIT / name
    if not script.is_file():
        pytest.skip(f"{script} not found (set SHAREMIG_BENCH_KIT to the bench kit directory)")
    return script


def clone_tree(src: Path, dst: Path) -> None:
    """`cp -a` is identical under treecmp (bench README), so it seeds instances faithfully."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", "--", f"{src}/.", str(dst)], check=True)


def treecmp(a: Path, b: Path) -> str:
    """ "" when the two trees are identical (owners included), else treecmp's report."""
    proc = subprocess.run(
        [sys.executable, str(kit_script("treecmp.py")), "--owner", str(a), str(b)],
        capture_output=True,
        text=True,
        check=False,
    )
    return "" if proc.returncode == 0 else proc.stdout[-3000:] + proc.stderr[-1000:]
