"""Migration contract: the driver hooks on real pool directories, one filesystem and two.

Every test runs for both layouts (`pools` fixture): the same promises hold whether the driver
renames (same filesystem) or copies with the mover (different filesystems).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from storage.db import session_scope
from storage.drivers.base import MigrationRef, PoolRef, ShareDriver
from storage.drivers.localfs_migration import job_id
from storage.drivers.registry import get_driver
from storage.errors import CancelledError, InvalidStateError, NotFoundError
from storage.models import CopyJob
from tests.kit.bench_kit import tree_diff
from tests.kit.drivers import PoolPair, clone_tree

SRC, DST, SNAP = "share-src", "share-dst", "snap-1"


@dataclass
class Migrating:
    pools: PoolPair
    source: ShareDriver
    dest: ShareDriver
    ref: MigrationRef
    reference: Path
    """The source instance as it was before the migration (cp -a)."""
    reference_snap: Path

    @property
    def src_dir(self) -> Path:
        return self.pools.source_root / SRC

    @property
    def dst_dir(self) -> Path:
        return self.pools.dest_root / DST

    def snap_dir(self, root: Path, location: str) -> Path:
        return root / ".snapshots" / location / SNAP

    @property
    def journal_dir(self) -> Path:
        return self.pools.source_root / ".migrations" / SRC


@pytest.fixture
def mig(pools: PoolPair, awkward_tree: Path, tmp_path: Path, db_url: str) -> Migrating:
    """A share with the awkward tree and one snapshot; the destination instance created empty."""
    source, dest = get_driver(pools.source), get_driver(pools.dest)
    source.create_instance(SRC)
    clone_tree(awkward_tree, pools.source_root / SRC)
    source.create_snapshot(SRC, SNAP)
    # The instance moves on after the snapshot, so a mix-up of the two would show.
    (pools.source_root / SRC / "after-snapshot.txt").write_bytes(b"written after the snapshot\n")
    reference = tmp_path / "reference"
    clone_tree(pools.source_root / SRC, reference)
    # The snapshot was taken of an exact clone of the dataset, so the dataset is its reference.
    reference_snap = awkward_tree
    dest.create_instance(DST)
    ref = MigrationRef(
        migration_id=str(uuid.uuid4()),
        source_location=SRC,
        dest_pool=pools.dest,
        dest_location=DST,
        snapshot_ids=(SNAP,),
        db_url=db_url,
    )
    return Migrating(pools, source, dest, ref, reference, reference_snap)


def _copy_jobs(db_url: str, ids: list[str]) -> int:
    with session_scope(db_url) as s:
        return int(s.scalar(select(func.count()).where(CopyJob.id.in_(ids))) or 0)


def test_compatibility_report_is_truthful(mig: Migrating) -> None:
    report = mig.source.migration_check_compatibility(SRC, mig.pools.dest)
    assert report.compatible
    assert report.writable and report.preserve_snapshots and report.preserve_metadata
    # The export path changes at switchover (clients remount): never claimed nondisruptive.
    assert not report.nondisruptive
    if mig.pools.layout == "same_fs":
        assert "same filesystem" in report.reason
    else:
        assert "different filesystems" in report.reason


def test_refuses_other_drivers_and_missing_sources(mig: Migrating, tmp_path: Path) -> None:
    obj = PoolRef("host@obj#x", "fsspec", (tmp_path / "obj").as_uri())
    report = mig.source.migration_check_compatibility(SRC, obj)
    assert not report.compatible and "fsspec driver" in report.reason
    assert not mig.source.migration_check_compatibility("share-gone", mig.pools.dest).compatible
    assert not get_driver(obj).migration_check_compatibility(SRC, mig.pools.dest).compatible


def test_full_migration_carries_data_and_snapshots(mig: Migrating) -> None:
    assert mig.source.migration_get_progress(mig.ref)["total_progress"] == 0
    mig.source.migration_start(mig.ref)
    mig.source.migration_start(mig.ref)  # a retried start changes nothing
    assert mig.source.migration_continue(mig.ref) is True
    assert mig.source.migration_get_progress(mig.ref)["total_progress"] == 100
    mig.source.migration_complete(mig.ref)
    mig.source.migration_complete(mig.ref)  # idempotent after a crash
    assert tree_diff(mig.reference, mig.dst_dir, owner=True) == ""
    assert tree_diff(mig.reference_snap, mig.snap_dir(mig.pools.dest_root, DST), owner=True) == ""
    assert mig.dest.list_snapshots(DST) == [SNAP]
    # The caller then deletes the source instance; the destination is unaffected.
    mig.source.delete_instance(SRC)
    assert not mig.src_dir.exists() and not mig.journal_dir.exists()
    assert tree_diff(mig.reference, mig.dst_dir, owner=True) == ""


def test_same_filesystem_switchover_moves_no_bytes(mig: Migrating) -> None:
    if mig.pools.layout != "same_fs":
        pytest.skip("only a rename keeps inodes")
    big = next(p for p in (mig.src_dir / "media").rglob("*") if p.is_file())
    rel = big.relative_to(mig.src_dir)
    inode = big.stat().st_ino
    mig.source.migration_start(mig.ref)
    mig.source.migration_continue(mig.ref)
    # Phase 1 wrote nothing on the destination.
    assert list(mig.dst_dir.iterdir()) == []
    mig.source.migration_complete(mig.ref)
    assert (mig.dst_dir / rel).stat().st_ino == inode
    assert not mig.src_dir.exists()


def test_cancel_after_phase1_leaves_the_source_as_it_was(mig: Migrating, db_url: str) -> None:
    mig.source.migration_start(mig.ref)
    mig.source.migration_continue(mig.ref)
    mig.source.migration_cancel(mig.ref)
    mig.source.migration_cancel(mig.ref)  # idempotent
    assert tree_diff(mig.reference, mig.src_dir, owner=True) == ""
    assert tree_diff(mig.reference_snap, mig.snap_dir(mig.pools.source_root, SRC), owner=True) == ""
    # The destination instance (created by the caller) is back to empty; nothing else is left.
    assert list(mig.dst_dir.iterdir()) == []
    assert not (mig.pools.dest_root / ".snapshots" / DST).exists()
    assert not mig.journal_dir.exists()
    ids = [job_id(mig.ref.migration_id, p) for p in ("instance", f"snapshot/{SNAP}")]
    assert _copy_jobs(db_url, ids) == 0
    with pytest.raises(InvalidStateError, match="not started"):
        mig.source.migration_continue(mig.ref)


def test_cancel_before_start_is_a_no_op(mig: Migrating) -> None:
    mig.source.migration_cancel(mig.ref)
    assert tree_diff(mig.reference, mig.src_dir, owner=True) == ""


def test_cancel_after_a_failed_switchover_restores_the_source(mig: Migrating) -> None:
    """A switchover that stops half-way (here: the destination's snapshot place got taken)."""
    if mig.pools.layout != "same_fs":
        pytest.skip("a copy switchover writes beside foreign snapshots, it replaces nothing")
    mig.source.migration_start(mig.ref)
    mig.source.migration_continue(mig.ref)
    squatter = mig.pools.dest_root / ".snapshots" / DST / "not-ours"
    squatter.mkdir(parents=True)
    (squatter / "f").write_bytes(b"x")
    with pytest.raises(InvalidStateError, match="not empty"):
        mig.source.migration_complete(mig.ref)
    mig.source.migration_cancel(mig.ref)
    assert tree_diff(mig.reference, mig.src_dir, owner=True) == ""
    assert tree_diff(mig.reference_snap, mig.snap_dir(mig.pools.source_root, SRC), owner=True) == ""
    assert (squatter / "f").read_bytes() == b"x"


def test_hooks_refuse_out_of_order_calls(mig: Migrating) -> None:
    with pytest.raises(InvalidStateError, match="not started"):
        mig.source.migration_continue(mig.ref)
    with pytest.raises(InvalidStateError, match="not started"):
        mig.source.migration_complete(mig.ref)
    mig.source.migration_start(mig.ref)
    with pytest.raises(InvalidStateError, match="phase 1"):
        mig.source.migration_complete(mig.ref)
    mig.source.migration_continue(mig.ref)
    mig.source.migration_complete(mig.ref)
    with pytest.raises(InvalidStateError, match="already switched over"):
        mig.source.migration_cancel(mig.ref)


def test_start_refuses_a_non_empty_destination(mig: Migrating) -> None:
    (mig.dst_dir / "stray").write_bytes(b"x")
    with pytest.raises(InvalidStateError, match="not empty"):
        mig.source.migration_start(mig.ref)
    assert not mig.journal_dir.exists()


def test_start_refuses_snapshots_it_cannot_find(mig: Migrating) -> None:
    ref = MigrationRef(**{**mig.ref.__dict__, "snapshot_ids": (SNAP, "snap-gone")})
    with pytest.raises(NotFoundError, match="snap-gone"):
        mig.source.migration_start(ref)


_POLLER = """
import json, sys, pathlib
from storage.drivers.base import MigrationRef, PoolRef
from storage.drivers.registry import get_driver
a = json.loads(sys.argv[1])
ref = MigrationRef(a["mid"], a["src"], PoolRef(**a["dest"]), a["dst"], tuple(a["snaps"]), a["db"])
driver = get_driver(PoolRef(**a["source"]))
stop = pathlib.Path(a["stop"])
while not stop.exists():
    print(driver.migration_get_progress(ref)["total_progress"], flush=True)
"""


def test_progress_only_rises_and_ends_at_100(mig: Migrating, tmp_path: Path) -> None:
    """Polled from another process while phase 1 runs, as the API reads it during a copy."""
    stop = tmp_path / "stop-polling"
    args = {
        "mid": mig.ref.migration_id,
        "src": SRC,
        "dst": DST,
        "snaps": list(mig.ref.snapshot_ids),
        "db": mig.ref.db_url,
        "source": asdict(mig.pools.source),
        "dest": asdict(mig.pools.dest),
        "stop": str(stop),
    }
    mig.source.migration_start(mig.ref)
    poller = subprocess.Popen(
        [sys.executable, "-c", _POLLER, json.dumps(args)], stdout=subprocess.PIPE, text=True
    )
    assert poller.stdout is not None
    first = poller.stdout.readline()  # the poller is up before phase 1 begins
    try:
        mig.source.migration_continue(mig.ref)
    finally:
        stop.touch()
        rest, _ = poller.communicate(timeout=60)
    seen = [int(v) for v in [first, *rest.split()]]
    seen.append(int(str(mig.source.migration_get_progress(mig.ref)["total_progress"])))
    assert seen[0] == 0
    assert seen == sorted(seen)
    assert seen[-1] == 100
    assert all(0 <= p <= 100 for p in seen)


def test_stop_request_interrupts_phase1_and_a_rerun_resumes(mig: Migrating) -> None:
    if mig.pools.layout == "same_fs":
        pytest.skip("phase 1 of a rename has nothing to interrupt")
    calls = 0

    def stop_soon() -> bool:
        nonlocal calls
        calls += 1
        return calls > 3

    mig.source.migration_start(mig.ref)
    with pytest.raises(CancelledError):
        mig.source.migration_continue(mig.ref, should_stop=stop_soon)
    assert mig.source.migration_get_progress(mig.ref)["total_progress"] < 100
    assert mig.source.migration_continue(mig.ref) is True
    mig.source.migration_complete(mig.ref)
    assert tree_diff(mig.reference, mig.dst_dir, owner=True) == ""


def _write_while(
    stop: threading.Event, wrote: threading.Event, root: Path, errors: list[BaseException]
) -> None:
    """A client busy on the source: appends, new files, deletes, renames, a new directory;
    `wrote` is set after its first round."""
    n = 0
    try:
        busy = root / "busy"
        busy.mkdir(exist_ok=True)
        while not stop.is_set():
            if n == 1:
                wrote.set()
            n += 1
            with open(root / "after-snapshot.txt", "ab") as fh:
                fh.write(b"%d\n" % n)
            (busy / f"new-{n}.bin").write_bytes(os.urandom(1 + n % 70_000))
            if n % 3 == 0:
                (busy / f"new-{n - 2}.bin").unlink(missing_ok=True)  # maybe renamed
            if n % 5 == 0:
                (busy / f"new-{n - 1}.bin").rename(busy / f"renamed-{n}.bin")
            if n % 50 == 0:
                (busy / f"dir-{n}").mkdir()
    except BaseException as exc:
        errors.append(exc)


def test_source_written_during_phase1_equals_destination_at_freeze(mig: Migrating) -> None:
    mig.source.migration_start(mig.ref)
    stop, wrote, errors = threading.Event(), threading.Event(), []
    writer = threading.Thread(target=_write_while, args=(stop, wrote, mig.src_dir, errors))
    writer.start()
    try:
        # Phase 1 starts on a source the client has already changed, and is still changing.
        assert wrote.wait(30), errors
        assert mig.source.migration_continue(mig.ref) is True
    finally:
        # The freeze: writers stop before the switchover (the export goes read-only).
        stop.set()
        writer.join()
    assert not errors
    frozen = mig.reference.parent / "frozen"
    clone_tree(mig.src_dir, frozen)
    mig.source.migration_complete(mig.ref)
    assert tree_diff(frozen, mig.dst_dir, owner=True) == ""
    assert tree_diff(mig.reference_snap, mig.snap_dir(mig.pools.dest_root, DST), owner=True) == ""
    assert (mig.dst_dir / "busy").is_dir()


def test_drivers_without_driver_assisted_migration_refuse_it(tmp_path: Path) -> None:
    obj = get_driver(PoolRef("host@obj#x", "fsspec", (tmp_path / "obj").as_uri()))
    ref = MigrationRef("m-1", SRC, obj.pool, DST)
    with pytest.raises(InvalidStateError, match="no driver-assisted migration"):
        obj.migration_start(ref)
    obj.migration_cancel(ref)  # nothing to undo, and saying so is not an error
