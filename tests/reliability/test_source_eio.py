"""EIO from the source: reading one file's blocks fails, every time. The copy retries the
batch, then ends in `migration_error` with the file named; source intact, destination copy
removed.

Two ways to get the EIO, and the test says which ran:
- a real one: an ext4 filesystem on a loop device behind a device-mapper table that maps
  the file's extents (`filefrag -v`) to the `error` target, the rest `linear`: the kernel's
  own EIO through the local fast path;
- where the kernel has no device-mapper (`/dev/mapper/control` missing, as in some VMs),
  the `faulty://` layer failing every read of that file (the fsspec path).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.kit.faulty_fs import Fault, set_faults
from tests.kit.reliability import (
    POOL_A,
    POOL_FAULTY_DST,
    POOL_FAULTY_SRC,
    Content,
    bytes_lost,
    content,
    drive_host_migration,
    instance_dirs,
    make_tree,
    new_share,
    record,
    start,
)
from tests.kit.shares import add_pool

BAD = "d2/f006.bin"
DM_NAME = f"sharemig-eio-{os.getpid()}"


def _share_state(share_id: str) -> tuple[str, str | None, str]:
    from storage.db import session_scope
    from storage.shares import get_share

    with session_scope() as s:
        share = get_share(s, share_id)
        return share.status, share.task_state, share.host


def _check_failed_cleanly(
    scenario: str,
    mig: str,
    share_id: str,
    src: Path,
    dst_pool: Path,
    outcome: str,
    expected: Content,
) -> None:
    from storage import migration_lifecycle as life

    error = life.status(mig).error or ""
    lost = bytes_lost(expected, src)
    record(scenario, outcome, lost)
    assert outcome == "migration_error", error
    assert f"{BAD}: injected read error" in error, error  # faulty://'s EIO text
    assert content(src) == expected, "the source must be untouched"
    assert instance_dirs(share_id) == [src], "the destination instance must be gone"
    assert [p for p in dst_pool.rglob("*") if not p.is_dir()] == []
    status = _share_state(share_id)
    assert status[:2] == ("available", "migration_error"), status


def test_eio_on_every_read_of_one_file_faulty_layer(pools: dict[str, Path]) -> None:
    """The fallback (and the fsspec path): `faulty://` fails every read of one file."""
    share_id, src = new_share(POOL_FAULTY_SRC)
    expected = make_tree(src, files=12, size=16 * 1024)
    mig = start(share_id, POOL_FAULTY_DST)
    plan = set_faults(Fault("read", "eio", BAD, times=-1))

    outcome = drive_host_migration(mig)

    assert plan.fired() >= 2, "the read must have been tried again"
    _check_failed_cleanly(
        "fault: source EIO on every read (faulty://)",
        mig,
        share_id,
        src,
        pools[POOL_FAULTY_DST],
        outcome,
        expected,
    )


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def _dm_missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (loop devices, mounts, dmsetup)"
    for tool in ("dmsetup", "losetup", "mkfs.ext4", "filefrag", "blockdev"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (.ci/system-packages)"
    targets = subprocess.run(["dmsetup", "targets"], capture_output=True, text=True)
    if targets.returncode != 0:
        first = (targets.stderr.strip().splitlines() or ["?"])[0]
        return (
            f"the kernel has no device-mapper (dmsetup targets: {first}); "
            "test_eio_on_every_read_of_one_file_faulty_layer covers EIO here"
        )
    if "error" not in targets.stdout.split():
        return "the kernel's device-mapper has no error target"
    return None


def _extents(path: Path) -> list[tuple[int, int]]:
    """The file's physical extents as (first block, block count), filesystem blocks."""
    out = _run("filefrag", "-v", str(path))
    found = []
    for line in out.splitlines():
        m = re.match(r"\s*\d+:\s*\d+\.\.\s*\d+:\s*(\d+)\.\.\s*(\d+):\s*(\d+):", line)
        if m:
            found.append((int(m.group(1)), int(m.group(3))))
    assert found, out
    return found


@pytest.fixture
def eio_mount(tmp_path: Path) -> Iterator[tuple[Path, Callable[[Path], None]]]:
    """An ext4 on a loop device at `mnt`; `arm(file)` remounts it through a device-mapper
    table whose extents of `file` are the `error` target."""
    why = _dm_missing()
    if why:
        pytest.skip(why)
    image, mnt = tmp_path / "eio.img", tmp_path / "eio"
    mnt.mkdir()
    with image.open("wb") as f:
        f.truncate(64 << 20)
    loop = _run("losetup", "--find", "--show", str(image)).strip()
    _run("mkfs.ext4", "-q", "-b", "4096", loop)
    _run("mount", loop, str(mnt))
    state: dict[str, bool] = {"dm": False}

    def arm(victim: Path) -> None:
        extents = _extents(victim)
        os.sync()
        _run("umount", str(mnt))
        sectors = int(_run("blockdev", "--getsz", loop))
        per_block = 4096 // 512
        table, at = [], 0
        for first, count in sorted(extents):
            start, length = first * per_block, count * per_block
            if start > at:
                table.append(f"{at} {start - at} linear {loop} {at}")
            table.append(f"{start} {length} error")
            at = start + length
        if at < sectors:
            table.append(f"{at} {sectors - at} linear {loop} {at}")
        subprocess.run(
            ["dmsetup", "create", DM_NAME], input="\n".join(table) + "\n", text=True, check=True
        )
        state["dm"] = True
        _run("mount", f"/dev/mapper/{DM_NAME}", str(mnt))

    try:
        yield mnt, arm
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
        if state["dm"]:
            subprocess.run(["dmsetup", "remove", "--retry", DM_NAME], check=False)
        subprocess.run(["losetup", "-d", loop], check=False)


def test_eio_from_a_device_mapper_error_target(
    pools: dict[str, Path],
    eio_mount: tuple[Path, Callable[[Path], None]],
) -> None:
    """The kernel's EIO: the file's blocks sit on a device-mapper `error` segment."""
    from storage.source_freeze import frozen_under, lift_dir

    mnt, arm = eio_mount
    (mnt / "pool").mkdir()
    add_pool("rel@localfs#eio", mnt / "pool")
    share_id, src = new_share("rel@localfs#eio")
    make_tree(src, files=12, size=16 * 1024)
    arm(src / BAD)
    expected = content_readable(src)
    with pytest.raises(OSError, match="Input/output error"):
        (src / BAD).read_bytes()
    mig = start(share_id, POOL_A)
    try:
        outcome = drive_host_migration(mig)
    finally:
        for path in frozen_under(mnt):
            lift_dir(path)
    from storage import migration_lifecycle as life

    error = life.status(mig).error or ""
    record(
        "fault: source EIO from a device-mapper error target", outcome, bytes_lost(expected, src)
    )
    assert outcome == "migration_error", error
    assert BAD in error and "Input/output error" in error, error
    assert content_readable(src) == expected, "the readable source must be untouched"
    assert instance_dirs(share_id) == [src], "the destination instance must be gone"
    assert [p for p in pools[POOL_A].rglob("*") if not p.is_dir()] == []


def content_readable(root: Path) -> Content:
    """`content` of every file but the one whose blocks fail."""
    import xxhash

    found = {}
    for path in root.rglob("*"):
        rel = str(path.relative_to(root))
        if path.is_file() and rel != BAD:
            data = path.read_bytes()
            found[rel] = (xxhash.xxh3_128_hexdigest(data), len(data))
    return found
