"""Fixtures for the driver contract suites: pools on one filesystem and on two, a fidelity tree.

The second filesystem is a tmpfs mounted by the session (root only), else `/dev/shm` when it
is a different filesystem from the temp dir; without either, the cross-filesystem cases skip
and say why. btrfs pools live on two loop-mounted btrfs images made by the session (root,
`mkfs.btrfs` and loop devices needed; the btrfs cases skip and say which is missing).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kit.bench_kit import gen_tree
from tests.kit.btrfs import mount_btrfs, remove_btrfs_pool, two_btrfs_mounts
from tests.kit.drivers import PoolPair, make_pool
from tests.kit.mounts import mount_tmpfs, unmount


@pytest.fixture(scope="session")
def ram_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tmpfs for this folder's test directories (under the basetemp, so a freeze a failed
    test left there is lifted like any other), else a plain directory of the basetemp."""
    where = tmp_path_factory.mktemp("ram")
    mounted = not mount_tmpfs(where, "2g")
    yield where
    if mounted:
        unmount(where)


@pytest.fixture
def tmp_path(ram_dir: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """Overrides pytest's `tmp_path` in the driver suites: each test copies its trees three
    or four times, which on the root filesystem (ext4, churned by earlier runs) cost most of
    this folder's time. Removed after the test unless it failed."""
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in request.node.name)[:80]
    path = ram_dir / name
    path.mkdir()
    failed = request.session.testsfailed
    yield path
    if request.session.testsfailed == failed:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def other_fs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory on a different filesystem from pytest's temp dir."""
    here = os.stat(tmp_path_factory.getbasetemp()).st_dev
    mounted = Path(tempfile.mkdtemp(prefix="sharemig-tmpfs-"))
    why = mount_tmpfs(mounted, "1g")
    if not why:
        yield mounted
        unmount(mounted)
        mounted.rmdir()
        return
    mounted.rmdir()
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


@pytest.fixture(scope="session")
def btrfs_mounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """Two separate loop-mounted btrfs filesystems with quotas enabled."""
    with two_btrfs_mounts(tmp_path_factory.mktemp("btrfs")) as mounts:
        yield mounts


@pytest.fixture(scope="session")
def btrfs_without_quotas(
    tmp_path_factory: pytest.TempPathFactory, btrfs_mounts: tuple[Path, Path]
) -> Iterator[Path]:
    """A third btrfs filesystem, with quotas left off (what a pool must refuse)."""
    base = tmp_path_factory.mktemp("btrfs-noquota")
    why = mount_btrfs(base / "c.img", base / "c", quotas=False)
    if why:
        pytest.skip(f"no btrfs test filesystem: {why}")
    yield base / "c"
    subprocess.run(["umount", str(base / "c")], capture_output=True, check=False)
    (base / "c.img").unlink()


@pytest.fixture(
    params=[
        ("localfs", "same_fs"),
        ("localfs", "cross_fs"),
        ("btrfs", "same_fs"),
        ("btrfs", "cross_fs"),
    ],
    ids=["same_fs", "cross_fs", "btrfs-same_fs", "btrfs-cross_fs"],
)
def pools(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PoolPair]:
    """Two pools of one driver: on one filesystem, or the destination on another one."""
    driver, layout = request.param
    if driver == "btrfs":
        fs_a, fs_b = request.getfixturevalue("btrfs_mounts")
        src_root = fs_a / tmp_path.name / "pool-a"
        dst_root = (fs_a if layout == "same_fs" else fs_b) / tmp_path.name / "pool-b"
    else:
        src_root = tmp_path / "pool-a"
        if layout == "same_fs":
            dst_root = tmp_path / "pool-b"
        else:
            other: Path = request.getfixturevalue("other_fs")
            dst_root = other / tmp_path.name / "pool-b"
    yield PoolPair(
        layout,
        make_pool(driver, "a", src_root),
        make_pool(driver, "b", dst_root),
        src_root,
        dst_root,
    )
    if driver == "btrfs":
        for root in (src_root, dst_root):
            remove_btrfs_pool(root)
    if layout == "cross_fs":
        shutil.rmtree(dst_root.parent, ignore_errors=True)


KEEP_ENTRIES = 400
"""Entries of the preset's ordinary `tree/` the contract tree keeps (of ~2,100)."""


def _entries(path: Path) -> int:
    return 1 + sum(len(dirs) + len(files) for _, dirs, files in os.walk(path))


@pytest.fixture(scope="session")
def awkward_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """gen_dataset's `small` preset cut down to what the driver contract needs: every
    awkward entry (`_awkward/`: names, links, xattrs, sparse files, a FIFO), one 16 MiB media
    file (a btrfs send long enough to be stopped part-way) and the first ~400 entries of the
    ordinary tree. Every test copies it three or four times; the mover's own suite
    (`tests/storage/mover/test_local_fidelity.py`) copies the whole preset."""
    target = tmp_path_factory.mktemp("dataset") / "small"
    gen_tree(target)
    for extra in sorted((target / "media").iterdir())[1:]:
        extra.unlink()
    kept = 0
    for entry in sorted((target / "tree").iterdir()):
        if kept >= KEEP_ENTRIES:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        else:
            kept += _entries(entry) if entry.is_dir() and not entry.is_symlink() else 1
    return target
