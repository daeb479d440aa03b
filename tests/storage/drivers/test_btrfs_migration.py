"""btrfs-only promises: snapshot chains kept with their shared extents, quotas, cancel mid-send.

Runs on two loop-mounted btrfs filesystems (`btrfs_mounts`); skips where they cannot be made.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from storage.drivers.base import MigrationRef, PoolRef
from storage.drivers.btrfs import BtrfsDriver
from storage.drivers.registry import get_driver
from storage.errors import CancelledError, PermanentError
from tests.kit.bench_kit import tree_diff
from tests.kit.btrfs import remove_btrfs_pool
from tests.kit.drivers import btrfs_pool, clone_tree
from tests.kit.waiting import wait_for

SRC, DST = "share-src", "share-dst"
SNAPS = ("snap-1", "snap-2", "snap-3")
MiB = 1 << 20


@dataclass
class Pair:
    source: BtrfsDriver
    dest: BtrfsDriver
    src_root: Path
    dst_root: Path

    def ref(self, snapshot_ids: tuple[str, ...] = SNAPS) -> MigrationRef:
        return MigrationRef(str(uuid.uuid4()), SRC, self.dest.pool, DST, snapshot_ids)


def _driver(pool: PoolRef) -> BtrfsDriver:
    drv = get_driver(pool)
    assert isinstance(drv, BtrfsDriver)
    return drv


@pytest.fixture
def pair(btrfs_mounts: tuple[Path, Path], tmp_path: Path) -> Iterator[Pair]:
    """A btrfs pool on each of the two filesystems."""
    fs_a, fs_b = btrfs_mounts
    src_root, dst_root = fs_a / tmp_path.name / "pool", fs_b / tmp_path.name / "pool"
    yield Pair(
        _driver(btrfs_pool("a", src_root)), _driver(btrfs_pool("b", dst_root)), src_root, dst_root
    )
    remove_btrfs_pool(src_root)
    remove_btrfs_pool(dst_root)


def _share_with_snapshots(pair: Pair, refs: Path, base_mib: int = 48) -> list[Path]:
    """A share of random data with three snapshots, each a little different; their clones."""
    pair.source.create_instance(SRC, size_gib=1)
    data = pair.src_root / SRC
    (data / "docs").mkdir()
    with open(data / "volume.bin", "wb") as fh:
        for _ in range(base_mib):
            fh.write(os.urandom(MiB))
    clones = []
    for i, sid in enumerate(SNAPS):
        (data / "docs" / f"note-{i}.txt").write_text(f"written before {sid}\n")
        with open(data / "volume.bin", "r+b") as fh:  # a block rewritten in place
            fh.seek(i * MiB)
            fh.write(os.urandom(MiB))
        pair.source.create_snapshot(SRC, sid)
        clones.append(refs / sid)
        clone_tree(data, clones[-1])
    return clones


def _append_until_frozen(root: Path, stop: threading.Event, errors: list[BaseException]) -> None:
    """A client appending to files until the share goes read-only (EROFS) or it is told to."""
    n = 0
    try:
        while not stop.is_set():
            n += 1
            with open(root / "docs" / "log.txt", "ab") as fh:
                fh.write(b"line %d\n" % n)
            with open(root / f"append-{n % 7}.bin", "ab") as fh:
                fh.write(os.urandom(4096))
    except OSError as exc:
        if exc.errno != errno.EROFS:
            errors.append(exc)
    except BaseException as exc:
        errors.append(exc)


def _du(path: Path) -> tuple[int, int, int]:
    """`btrfs filesystem du -s`: total, exclusive and shared bytes below `path`."""
    out = subprocess.run(
        ["btrfs", "filesystem", "du", "-s", "--raw", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    total, exclusive, shared = out.splitlines()[-1].split()[:3]
    return int(total), int(exclusive), int(shared)


def _write_until_full(path: Path, limit: int) -> OSError | None:
    """Write up to `limit` + 64 MiB into `path`; the error that stopped it, if any."""
    chunk = b"\xa5" * (16 * MiB)
    try:
        with open(path, "wb") as fh:
            for _ in range((limit + 64 * MiB) // len(chunk)):
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        return exc
    finally:
        path.unlink(missing_ok=True)
    return None


def test_migration_across_filesystems_keeps_snapshots_and_shared_extents(
    pair: Pair, tmp_path: Path
) -> None:
    clones = _share_with_snapshots(pair, tmp_path / "refs")
    pair.dest.create_instance(DST, size_gib=1)
    ref = pair.ref()
    report = pair.source.migration_check_compatibility(SRC, pair.dest.pool)
    assert report.compatible and report.preserve_snapshots and report.preserve_metadata
    assert "different filesystems" in report.reason
    src_data = pair.src_root / SRC
    stop, errors = threading.Event(), []
    writer = threading.Thread(target=_append_until_frozen, args=(src_data, stop, errors))
    pair.source.migration_start(ref)
    writer.start()
    try:
        assert pair.source.migration_continue(ref) is True
        assert pair.source.migration_get_progress(ref)["total_progress"] == 100
        # The writer is still appending; the switchover freezes it (EROFS ends its loop).
        pair.source.migration_complete(ref)
        writer.join(timeout=60)
        assert not writer.is_alive(), "the writer was never refused: the source is not frozen"
    finally:
        stop.set()
        writer.join()
    assert not errors
    assert (src_data / "docs" / "log.txt").stat().st_size > 0
    # The frozen source (read-only since the freeze) is what the destination holds.
    assert tree_diff(src_data, pair.dst_root / DST, owner=True) == ""
    assert pair.dest.list_snapshots(DST) == list(SNAPS)
    for sid, clone in zip(SNAPS, clones, strict=True):
        assert tree_diff(clone, pair.dst_root / ".snapshots" / DST / sid, owner=True) == "", sid
    # Four trees of ~48 MiB, stored about once: the snapshots share their extents.
    total, exclusive, shared = _du(pair.dst_root)
    assert total >= 4 * 48 * MiB
    assert exclusive + shared < 2 * 48 * MiB, (total, exclusive, shared)
    # No migration snapshot or staging directory is left on either side.
    assert not list((pair.dst_root / ".migrations").rglob("*.recv"))
    assert not list((pair.src_root / ".migrations").rglob("*.snaps"))
    pair.source.delete_instance(SRC)
    assert not src_data.exists()


def test_quota_refuses_writes_past_the_size_on_both_pools(pair: Pair) -> None:
    limit = 1 << 30
    pair.source.create_instance(SRC, size_gib=1)
    (pair.src_root / SRC / "keep.txt").write_text("kept\n")
    exc = _write_until_full(pair.src_root / SRC / "big.bin", limit)
    assert exc is not None and exc.errno == errno.EDQUOT, exc
    pair.dest.create_instance(DST, size_gib=1)
    ref = pair.ref(())
    pair.source.migration_start(ref)
    pair.source.migration_continue(ref)
    pair.source.migration_complete(ref)
    assert (pair.dst_root / DST / "keep.txt").read_text() == "kept\n"
    exc = _write_until_full(pair.dst_root / DST / "big.bin", limit)
    assert exc is not None and exc.errno == errno.EDQUOT, exc
    # Within the size, writing works.
    (pair.dst_root / DST / "small.bin").write_bytes(os.urandom(MiB))


def _assert_nothing_received(pair: Pair) -> None:
    assert list((pair.dst_root / DST).iterdir()) == []
    assert not (pair.dst_root / ".snapshots" / DST).exists()
    assert not list((pair.dst_root / ".migrations").rglob("*.recv"))
    listing = subprocess.run(
        ["btrfs", "subvolume", "list", "-o", str(pair.dst_root.parent.parent)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"{pair.dst_root.parent.name}/pool/{DST}" in listing  # the caller's empty instance
    assert listing.count(pair.dst_root.parent.name) == 1, listing


def _assert_source_intact_and_writable(pair: Pair, clones: list[Path]) -> None:
    assert pair.source.list_snapshots(SRC) == list(SNAPS)
    for sid, clone in zip(SNAPS, clones, strict=True):
        assert tree_diff(clone, pair.src_root / ".snapshots" / SRC / sid, owner=True) == "", sid
    (pair.src_root / SRC / "after-cancel.txt").write_text("still writable\n")
    assert not list((pair.src_root / ".migrations").rglob("*"))


def test_cancel_mid_send_removes_everything_received(pair: Pair, tmp_path: Path) -> None:
    clones = _share_with_snapshots(pair, tmp_path / "refs")
    pair.dest.create_instance(DST)
    ref = pair.ref()
    polls = 0

    def stop_in_the_first_stream() -> bool:
        nonlocal polls
        polls += 1  # polled per MiB of the stream: 10 is inside the 48 MiB full send
        return polls > 10

    pair.source.migration_start(ref)
    with pytest.raises(CancelledError):
        pair.source.migration_continue(ref, should_stop=stop_in_the_first_stream)
    progress = pair.source.migration_get_progress(ref)
    assert 0 < int(str(progress["bytes_sent"])) < 48 * MiB
    assert int(str(progress["total_progress"])) < 100
    pair.source.migration_cancel(ref)
    _assert_nothing_received(pair)
    _assert_source_intact_and_writable(pair, clones)


def _kill_receiver() -> None:
    me = str(os.getpid())
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue  # gone meanwhile
        if stat[1] == me and cmd[:2] == [b"btrfs", b"receive"]:
            os.kill(int(proc.name), 9)


def test_killed_receiver_fails_naming_the_step_and_a_rerun_resumes(
    pair: Pair, tmp_path: Path
) -> None:
    clones = _share_with_snapshots(pair, tmp_path / "refs")
    pair.dest.create_instance(DST)
    ref = pair.ref()
    polls = 0

    def kill_receiver_once() -> bool:
        nonlocal polls
        polls += 1
        if polls == 5:
            _kill_receiver()
        return False

    pair.source.migration_start(ref)
    with pytest.raises(PermanentError, match=r"phase 1: sending snap-1 .*btrfs receive"):
        pair.source.migration_continue(ref, should_stop=kill_receiver_once)
    # The half-received snapshot is gone, never listed as one.
    assert pair.dest.list_snapshots(DST) == []
    assert not (pair.dst_root / ".snapshots" / DST / "snap-1").exists()
    # Recovery re-runs phase 1: it resumes and finishes; the chain arrives intact.
    assert pair.source.migration_continue(ref) is True
    pair.source.migration_complete(ref)
    for sid, clone in zip(SNAPS, clones, strict=True):
        assert tree_diff(clone, pair.dst_root / ".snapshots" / DST / sid, owner=True) == "", sid


def test_killed_receiver_then_cancel_leaves_the_source_writable(pair: Pair, tmp_path: Path) -> None:
    clones = _share_with_snapshots(pair, tmp_path / "refs", base_mib=16)
    pair.dest.create_instance(DST)
    ref = pair.ref()
    polls = 0

    def kill_in_the_second_stream() -> bool:
        nonlocal polls
        polls += 1
        if polls == 20:  # past the 16 MiB full send of snap-1
            _kill_receiver()
        return False

    pair.source.migration_start(ref)
    with pytest.raises(PermanentError, match="btrfs receive"):
        pair.source.migration_continue(ref, should_stop=kill_in_the_second_stream)
    pair.source.migration_cancel(ref)
    _assert_nothing_received(pair)
    _assert_source_intact_and_writable(pair, clones)


def test_same_filesystem_move_keeps_snapshots(pair: Pair, tmp_path: Path) -> None:
    clones = _share_with_snapshots(pair, tmp_path / "refs", base_mib=4)
    other = _driver(btrfs_pool("c", pair.src_root.parent / "pool-c"))
    other.create_instance(DST, size_gib=1)
    ref = MigrationRef(str(uuid.uuid4()), SRC, other.pool, DST, SNAPS)
    inode = (pair.src_root / SRC / "volume.bin").stat().st_ino
    pair.source.migration_start(ref)
    pair.source.migration_continue(ref)
    pair.source.migration_complete(ref)
    moved = other.root / DST
    assert (moved / "volume.bin").stat().st_ino == inode
    assert other.list_snapshots(DST) == list(SNAPS)
    for sid, clone in zip(SNAPS, clones, strict=True):
        assert tree_diff(clone, other.root / ".snapshots" / DST / sid, owner=True) == "", sid
    assert pair.source.list_snapshots(SRC) == []


def test_revert_to_snapshot_restores_its_data_and_keeps_the_size(pair: Pair) -> None:
    pair.source.create_instance(SRC, size_gib=1)
    data = pair.src_root / SRC
    (data / "f").write_text("before\n")
    pair.source.create_snapshot(SRC, "snap-1")
    (data / "f").write_text("after\n")
    (data / "new").write_text("x\n")
    pair.source.revert_to_snapshot(SRC, "snap-1")
    assert (data / "f").read_text() == "before\n"
    assert not (data / "new").exists()
    exc = _write_until_full(data / "big.bin", 1 << 30)
    assert exc is not None and exc.errno == errno.EDQUOT


_PHASE1_CHILD = """
import json, pathlib, sys, threading
from storage.drivers.base import MigrationRef, PoolRef
from storage.drivers.registry import get_driver
a = json.loads(sys.argv[1])
ref = MigrationRef(a["mid"], a["src"], PoolRef(**a["dest"]), a["dst"], tuple(a["snaps"]))
polls = 0
def stall_mid_stream():
    global polls
    polls += 1
    if polls == 10:  # inside the first (full) stream: say so, then hang until killed
        pathlib.Path(a["marker"]).touch()
        threading.Event().wait()
    return False
get_driver(PoolRef(**a["source"])).migration_continue(ref, should_stop=stall_mid_stream)
"""


def _receivers_into(directory: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd[:2] == [b"btrfs", b"receive"] and os.fsencode(directory) in cmd:
            found.append(int(proc.name))
    return found


def test_kill_9_mid_send_then_a_rerun_resumes_and_never_lists_a_half_snapshot(
    pair: Pair, tmp_path: Path
) -> None:
    clones = _share_with_snapshots(pair, tmp_path / "refs")
    pair.dest.create_instance(DST)
    ref = pair.ref()
    pair.source.migration_start(ref)
    marker = tmp_path / "mid-stream"
    args = {
        "mid": ref.migration_id,
        "src": SRC,
        "dst": DST,
        "snaps": list(SNAPS),
        "source": asdict(pair.source.pool),
        "dest": asdict(pair.dest.pool),
        "marker": str(marker),
    }
    child = subprocess.Popen([sys.executable, "-c", _PHASE1_CHILD, json.dumps(args)])
    try:
        wait_for(lambda: marker.exists() or child.poll() is not None, timeout=120, what="send")
        assert child.poll() is None, "phase 1 ended before it was killed"
    finally:
        child.kill()  # SIGKILL: no cleanup of its own runs
        child.wait()
    snaps_dir = pair.dst_root / ".snapshots" / DST
    # Its btrfs send/receive lose their pipe and exit; the receive leaves half a subvolume.
    wait_for(lambda: not _receivers_into(snaps_dir), timeout=60, what="the orphaned receive")
    assert (snaps_dir / "snap-1").is_dir()
    assert pair.dest.list_snapshots(DST) == []  # half-received: never listed as a snapshot
    # Recovery runs phase 1 again: the half subvolume is replaced, the chain completes.
    assert pair.source.migration_continue(ref) is True
    pair.source.migration_complete(ref)
    assert pair.dest.list_snapshots(DST) == list(SNAPS)
    for sid, clone in zip(SNAPS, clones, strict=True):
        assert tree_diff(clone, snaps_dir / sid, owner=True) == "", sid
