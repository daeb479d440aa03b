"""Fixtures for the driver contract suites: pools on one filesystem and on two, a fidelity tree.

The second filesystem is a tmpfs mounted by the session (root only), else `/dev/shm` when it
is a different filesystem from the temp dir; without either, the cross-filesystem cases skip
and say why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from drivers_kit import PoolPair, kit_script, localfs_pool


def _mount_tmpfs() -> tuple[Path | None, str]:
    where = Path(tempfile.mkdtemp(prefix="sharemig-tmpfs-"))
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1g", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode == 0:
        return where, ""
    where.rmdir()
    return None, proc.stderr.strip() or f"mount exited {proc.returncode}"


@pytest.fixture(scope="session")
def other_fs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory on a different filesystem from pytest's temp dir."""
    here = os.stat(tmp_path_factory.getbasetemp()).st_dev
    mounted, why = _mount_tmpfs()
    if mounted is not None:
        yield mounted
        subprocess.run(["umount", "-l", str(mounted)], check=False)
        mounted.rmdir()
        return
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and os.stat(shm).st_dev != here:
        scratch = Path(tempfile.mkdtemp(prefix="sharemig-", dir=shm))
        yield scratch
        shutil.rmtree(scratch, ignore_errors=True)
        return
    pytest.skip(
        f"no second filesystem: `mount -t tmpfs` failed ({why}) and /dev/shm is not a "
        "separate writable filesystem"
    )


@pytest.fixture(params=["same_fs", "cross_fs"])
def pools(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PoolPair]:
    """Two localfs pools: both under the temp dir, or the destination on another filesystem."""
    src_root = tmp_path / "pool-a"
    if request.param == "same_fs":
        dst_root = tmp_path / "pool-b"
    else:
        other: Path = request.getfixturevalue("other_fs")
        dst_root = other / tmp_path.name / "pool-b"
    yield PoolPair(
        request.param,
        localfs_pool("a", src_root),
        localfs_pool("b", dst_root),
        src_root,
        dst_root,
    )
    if request.param == "cross_fs":
        shutil.rmtree(dst_root.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def awkward_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """gen_dataset's `small` preset (awkward names, links, xattrs, sparse files, a FIFO)."""
    target = tmp_path_factory.mktemp("dataset") / "small"
    subprocess.run(
        [sys.executable, str(kit_script("gen_dataset.py")), str(target), "--preset", "small"],
        check=True,
        capture_output=True,
    )
    return target
