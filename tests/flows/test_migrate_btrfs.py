"""A share with 3 snapshots on a btrfs pool migrates to a btrfs pool on another filesystem,
through the real Prefect server and worker: phase 1 by send/receive, approval, switchover."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kit.bench_kit import gen_tree, treecmp
from tests.kit.btrfs import remove_btrfs_pool, two_btrfs_mounts
from tests.kit.flow_runs import start_request
from tests.kit.prefect_service import POOL_B
from tests.kit.shares import add_pool, db_share, migration_of, new_share
from tests.kit.waiting import wait_task_state

pytestmark = pytest.mark.usefixtures("service_env")

POOL_BTRFS_A = "sharemig@btrfs#a"
POOL_BTRFS_B = "sharemig@btrfs#b"


@pytest.fixture(scope="module")
def btrfs_roots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    with two_btrfs_mounts(tmp_path_factory.mktemp("flows-btrfs")) as mounts:
        pools = (mounts[0] / "pool", mounts[1] / "pool")
        for pool in pools:
            pool.mkdir()
        try:
            yield pools
        finally:
            for pool in pools:
                remove_btrfs_pool(pool)


@pytest.fixture
def btrfs_pools(btrfs_roots: tuple[Path, Path]) -> Iterator[tuple[Path, Path]]:
    """Two btrfs pools in the worker's database (beside the demo pools it already has)."""
    from storage.db import session_scope
    from storage.models import Pool

    for name, root in zip((POOL_BTRFS_A, POOL_BTRFS_B), btrfs_roots, strict=True):
        add_pool(name, root, driver="btrfs", capacity_gb=2)
    yield btrfs_roots
    with session_scope() as s:
        for name in (POOL_BTRFS_A, POOL_BTRFS_B):
            pool_row = s.get(Pool, name)
            if pool_row is not None:
                pool_row.enabled = False


def test_btrfs_share_with_snapshots_migrates_across_filesystems(
    btrfs_pools: tuple[Path, Path], tmp_path: Path
) -> None:
    from flows import control
    from storage.db import session_scope
    from storage.shares import create_snapshot, list_snapshots

    share = new_share(POOL_BTRFS_A)
    gen_tree(tmp_path / "tree")
    subprocess.run(["cp", "-a", "--", f"{tmp_path / 'tree'}/.", str(share.path)], check=True)
    refs = []
    for i in range(3):
        (share.path / f"before-snapshot-{i}.txt").write_text(f"{i}\n")
        with session_scope() as s:
            snap_id = create_snapshot(s, share.share_id, name=f"snap-{i}").id
        refs.append((snap_id, tmp_path / f"ref-{i}"))
        subprocess.run(["cp", "-a", "--", f"{share.path}/.", str(refs[-1][1])], check=True)
    started = control.start_migration(
        share.share_id,
        start_request(POOL_BTRFS_B, preserve_metadata=True, preserve_snapshots=True, writable=True),
    )
    wait_task_state(db_share(share.share_id), "migration_driver_phase1_done", timeout=180)
    (share.path / "written-in-phase-1.txt").write_text("still writable\n")
    frozen_reference = tmp_path / "at-freeze"
    subprocess.run(["cp", "-a", "--", f"{share.path}/.", str(frozen_reference)], check=True)
    control.complete_migration(share.share_id, reason="btrfs send/receive")
    row = wait_task_state(db_share(share.share_id), "migration_success", timeout=180)
    assert row["host"] == POOL_BTRFS_B and row["status"] == "available"
    mig = migration_of(share.share_id)
    assert mig.mechanism == "driver" and mig.flow_run_id == started.flow_run_id
    dest_root = btrfs_pools[1]
    location = row["instances"][0][3]
    assert treecmp(frozen_reference, dest_root / location).returncode == 0
    with session_scope() as s:
        assert {snap.id for snap in list_snapshots(s, share.share_id)} == {r[0] for r in refs}
    for snap_id, ref in refs:
        result = treecmp(ref, dest_root / ".snapshots" / location / snap_id)
        assert result.returncode == 0, result.stdout[-2000:]
    assert not share.path.exists()


@pytest.mark.parametrize(
    ("source", "dest"),
    [(POOL_BTRFS_A, POOL_B), (POOL_B, POOL_BTRFS_B)],
    ids=["to-localfs", "from-localfs"],
)
def test_host_assisted_between_btrfs_and_localfs(
    btrfs_pools: tuple[Path, Path], small_reference: Path, source: str, dest: str
) -> None:
    """Not the driver's path (the other pool is localfs): the mover copies, verified."""
    from flows import control
    from storage.db import session_scope
    from storage.pools import driver_for

    share = new_share(source)
    subprocess.run(["cp", "-a", "--", f"{small_reference}/.", str(share.path)], check=True)
    control.start_migration(share.share_id, start_request(dest))
    wait_task_state(db_share(share.share_id), "data_copying_completed", timeout=180)
    assert migration_of(share.share_id).mechanism == "host"
    control.complete_migration(share.share_id, reason="mover")
    row = wait_task_state(db_share(share.share_id), "migration_success", timeout=180)
    assert row["host"] == dest
    with session_scope() as s:
        moved = Path(driver_for(s, dest).instance_url(row["instances"][0][3]))
    result = treecmp(small_reference, moved)
    assert result.returncode == 0, result.stdout[-2000:]
    assert not share.path.exists()
