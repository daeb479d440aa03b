"""The rollback window end to end: real Prefect server and worker, real localfs pools, the
real `sharemig` command. Migrate with retention, change the new instance, roll back, compare
trees with the bench kit's treecmp, and watch the retained instance expire."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.kit.bench_kit import gen_tree, treecmp
from tests.kit.flow_runs import start_request
from tests.kit.prefect_service import POOL_A, POOL_B
from tests.kit.shares import db_share, migration_of, new_share, share_row
from tests.kit.waiting import wait_for, wait_task_state

pytestmark = pytest.mark.usefixtures("service_env")

SHAREMIG = str(Path(sys.executable).with_name("sharemig"))


def sharemig(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SHAREMIG, *args], capture_output=True, text=True, env=dict(os.environ), timeout=120
    )


@pytest.fixture
def retain(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Set the rollback window of the starts this test makes (recorded at admission)."""
    from storage.settings import reset_settings

    def set_window(seconds: float) -> None:
        monkeypatch.setenv("SHAREMIG_RETAIN_SOURCE_S", str(seconds))
        reset_settings()

    return set_window


def _migrate(share_id: str, host: str, **flags: bool) -> None:
    from flows import control

    control.start_migration(share_id, start_request(host, **flags))
    wait_task_state(db_share(share_id), "data_copying_completed", "migration_driver_phase1_done")
    control.complete_migration(share_id, reason="test approves")
    wait_task_state(db_share(share_id), "migration_success")


def _instance(share_id: str, status: str) -> tuple[str, str, Path]:
    from storage.db import session_scope
    from storage.pools import driver_for
    from storage.shares import instances

    with session_scope() as s:
        for inst in instances(s, share_id):
            if inst.status == status:
                root = driver_for(s, inst.pool_name).instance_url(inst.location)
                return inst.id, inst.pool_name, Path(root)
    raise AssertionError(f"share {share_id} has no {status} instance: {share_row(share_id)}")


def _copied_by(migration_id: str) -> set[bytes]:
    """Entries the rollback's mover copied (seeded, unchanged entries carry no hash)."""
    from sqlalchemy import select

    from storage.db import session_scope
    from storage.models import ManifestEntry

    with session_scope() as s:
        rows = s.execute(
            select(ManifestEntry.path).where(
                ManifestEntry.job_id == migration_id, ManifestEntry.src_hash.is_not(None)
            )
        )
        return {r.path for r in rows}


def test_rollback_copies_back_only_what_changed(retain: Any, tmp_path: Path) -> None:
    retain(3600)
    share = new_share(POOL_A)
    gen_tree(share.path)
    _migrate(share.share_id, POOL_B, force_host_assisted_migration=True)

    kept_id, kept_pool, kept_root = _instance(share.share_id, "retained")
    assert kept_pool == POOL_A and kept_root == share.path
    listed = json.loads(sharemig("shares", "--json").stdout)
    mine = next(r for r in listed if r["id"] == share.share_id)
    assert (mine["host"], mine["retained_on"]) == (POOL_B, POOL_A)
    assert mine["retained_until"]
    from flows import control

    details = control.migration_progress(share.share_id).details
    assert details["sharemig_retained_instance"]["pool"] == POOL_A  # type: ignore[index]
    # The old instance is charged to its pool while it is kept.
    from storage.db import session_scope
    from storage.pools import allocated_gb

    with session_scope() as s:
        assert allocated_gb(s)[POOL_A] >= 1

    _, _, new_root = _instance(share.share_id, "available")
    files = sorted(p for p in new_root.rglob("*") if p.is_file() and not p.is_symlink())
    changed, removed = files[0], files[1]
    changed.write_bytes(b"changed on the new instance\n")
    removed.unlink()
    (new_root / "added-after-switchover").mkdir()
    (new_root / "added-after-switchover" / "new.txt").write_text("new\n")
    expected = tmp_path / "expected"
    # cp -a keeps what treecmp compares (times, modes, links, special files).
    subprocess.run(["cp", "-a", str(new_root), str(expected)], check=True)

    out = sharemig("rollback", share.share_id, "--json")
    assert out.returncode == 0, out.stderr
    rollback_id = json.loads(out.stdout)["migration_id"]
    row = wait_task_state(db_share(share.share_id), "migration_success")
    assert row["host"] == POOL_A
    assert [(i[1], i[2]) for i in row["instances"]] == [(POOL_A, "available")]
    cmp = treecmp(expected, share.path)
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr
    copied = _copied_by(rollback_id)
    rel = {changed.relative_to(new_root), Path("added-after-switchover/new.txt")}
    assert {Path(os.fsdecode(p)) for p in copied} == rel
    assert migration_of(share.share_id).rollback_of is not None
    assert not new_root.exists() or not any(new_root.iterdir())

    again = sharemig("rollback", share.share_id)
    assert again.returncode == 2
    assert "no retained instance" in " ".join(again.stderr.split())
    assert share_row(share.share_id)["host"] == POOL_A and kept_id


def test_retained_instance_expires_and_a_late_rollback_is_refused(retain: Any) -> None:
    retain(3)
    share = new_share(POOL_A)
    (share.path / "f.txt").write_text("data\n")
    _migrate(share.share_id, POOL_B, force_host_assisted_migration=True)
    kept_id, _, kept_root = _instance(share.share_id, "retained")

    def expired() -> bool:
        return all(i[0] != kept_id for i in share_row(share.share_id)["instances"])

    # The expiry run scheduled at the deadline deletes it (a worker picks it up then).
    wait_for(expired, timeout=90, interval=0.5, what="the retained instance to expire")
    assert not kept_root.exists()
    late = sharemig("rollback", share.share_id)
    assert late.returncode == 2 and "no retained instance" in " ".join(late.stderr.split())
    assert share_row(share.share_id)["host"] == POOL_B


def test_rollback_refused_while_another_migration_runs(retain: Any) -> None:
    from flows import control

    retain(3600)
    share = new_share(POOL_A)
    (share.path / "f.txt").write_text("data\n")
    _migrate(share.share_id, POOL_B, force_host_assisted_migration=True)
    control.start_migration(
        share.share_id, start_request(POOL_A, force_host_assisted_migration=True)
    )
    wait_task_state(db_share(share.share_id), "data_copying_completed")
    before = share_row(share.share_id)
    busy = sharemig("rollback", share.share_id)
    assert busy.returncode == 2
    assert "another migration of it is running" in " ".join(busy.stderr.split())
    assert share_row(share.share_id) == before
    control.cancel_migration(share.share_id, reason="test done")
    wait_task_state(db_share(share.share_id), "migration_cancelled")
