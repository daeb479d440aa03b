"""The destination fills up during the switchover's final sync (a real 2 MiB tmpfs, the
kernel's ENOSPC): the switchover gives up after its attempts and the migration goes back to
waiting (`data_copying_completed`), the source intact and served as before, the message
naming the pool and its free space. Once space is freed, a new approval succeeds.

Through a real Prefect server and worker (the `switchover` flow's retries and its way back
are what is tested).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kit.flow_runs import start_request
from tests.kit.mounts import tmpfs
from tests.kit.prefect_service import POOL_A
from tests.kit.shares import add_pool, db_share, migration_of, new_share
from tests.kit.waiting import wait_for, wait_task_state

pytestmark = pytest.mark.usefixtures("service_env")

SMALL = "sharemig@localfs#small"


@pytest.fixture
def small_pool(tmp_path: Path) -> Iterator[Path]:
    """A destination pool on a 2 MiB tmpfs, added to the inventory the worker reads."""
    with tmpfs(tmp_path / "small", "2m") as mnt:
        (mnt / "pool").mkdir()
        add_pool(SMALL, mnt / "pool")
        yield mnt


def _fill(path: Path) -> int:
    """Write `path` until the filesystem is full (another tenant's share grew); its size."""
    block = b"\xab" * (64 << 10)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    written = 0
    try:
        while True:
            try:
                written += os.write(fd, block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                return written
    finally:
        os.close(fd)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_disk_full_in_the_final_sync_goes_back_to_waiting(small_pool: Path) -> None:
    from flows import control
    from storage import migration_lifecycle as lifecycle
    from storage.source_freeze import is_frozen

    share = new_share(POOL_A, snapshots=False)
    for i in range(10):
        (share.path / f"f{i}.bin").write_bytes(bytes([i]) * (64 << 10))
    before = _files(share.path)
    started = control.start_migration(
        share.share_id, start_request(SMALL, force_host_assisted_migration=True)
    )
    wait_task_state(db_share(share.share_id), "data_copying_completed", timeout=180)
    mig = migration_of(share.share_id)
    dest = small_pool / "pool" / f"share-{mig.dest_instance_id}"
    frozen_before = is_frozen(share.path)
    # While it waited: three copied files were lost at the destination (the switchover must
    # copy them again) and another tenant filled the pool.
    for i in range(3):
        (dest / f"f{i}.bin").unlink()
    filler = _fill(small_pool / "other-tenant.bin")
    assert filler > 0

    control.complete_migration(share.share_id)
    wait_for(
        lambda: lifecycle.status(mig.id).flow_run_id != started.flow_run_id,
        timeout=240,
        what="a new run after the switchover gave up",
    )
    row = wait_task_state(db_share(share.share_id), "data_copying_completed", timeout=60)

    assert row["status"] == "migrating" and row["host"] == POOL_A
    assert _files(share.path) == before, "the source must be intact"
    assert is_frozen(share.path) == frozen_before, "the source is served as before"
    why = str(control.migration_progress(share.share_id).details["switchover_error"])
    assert "waiting for approval again" in why, why
    assert f"the destination pool {SMALL} is full" in why and "MiB free of 2 MiB" in why, why
    assert "No space left on device" in why, why
    assert "attempt 3/3" in why, why

    (small_pool / "other-tenant.bin").unlink()
    control.complete_migration(share.share_id)
    row = wait_task_state(db_share(share.share_id), "migration_success", timeout=240)
    assert row["host"] == SMALL
    assert _files(dest) == before
