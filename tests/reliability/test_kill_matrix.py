"""kill -9 of the process running a migration, at several points, on a real Prefect server
and worker. After `flows.recovery.recover_migrations` every migration reaches the end an
undisturbed one reaches: treecmp-identical data, no verified file copied again, a switchover
carried to its end (never half-done), and no share left in `migrating` with nobody on it.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from conftest import record
from prefect_service import wait_for
from reliability_kit import bytes_lost, content, gen_tree, treecmp

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("service_env")]

POOL_A = "sharemig@localfs#pool-a"
POOL_B = "sharemig@localfs#pool-b"


def _share(pool: str) -> tuple[str, Path]:
    from storage.db import session_scope
    from storage.pools import driver_for
    from storage.shares import active_instance, create_share

    with session_scope() as s:
        share = create_share(s, project_id="rel", size=1, host=pool)
        inst = active_instance(s, share)
        return share.id, Path(driver_for(s, pool).instance_url(inst.location))


def _row(share_id: str) -> dict[str, Any]:
    from sqlalchemy import select

    from storage.db import session_scope
    from storage.models import Migration
    from storage.shares import get_share, instances

    with session_scope() as s:
        share = get_share(s, share_id)
        mig = s.scalars(
            select(Migration)
            .where(Migration.share_id == share_id)
            .order_by(Migration.created_at.desc())
        ).first()
        return {
            "task_state": share.task_state,
            "status": share.status,
            "host": share.host,
            "instances": [(i.pool_name, i.status) for i in instances(s, share_id)],
            "mig": mig,
        }


def _run_processes(run_id: str) -> list[int]:
    marker = f"PREFECT__FLOW_RUN_ID={run_id}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _kill_run(run_id: str) -> None:
    pids = wait_for(lambda: _run_processes(run_id), timeout=30, what="the run's process")
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


def _run_state(run_id: str) -> Any:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(run_id)).state


def _recover_until_resumed(share_id: str) -> str:
    """Wait for Prefect to see the run dead, then recover; returns the action taken."""
    from flows.recovery import recover_migrations

    def recovered() -> str | None:
        for r in recover_migrations():
            if r.share_id == share_id and r.action != "leave":
                return r.action
        return None

    return str(wait_for(recovered, timeout=90, interval=1, what="recovery of the migration"))


def _dest_path(share_id: str) -> Path:
    from storage.db import session_scope
    from storage.pools import driver_for
    from storage.shares import active_instance, get_share

    with session_scope() as s:
        inst = active_instance(s, get_share(s, share_id))
        return Path(driver_for(s, inst.pool_name).instance_url(inst.location))


def _start(share_id: str) -> str:
    from flows import control
    from flows.control import StartRequest

    req = StartRequest(
        host=POOL_B,
        preserve_metadata=False,
        preserve_snapshots=False,
        writable=False,
        nondisruptive=False,
        force_host_assisted_migration=True,
    )
    started = control.start_migration(share_id, req)
    assert started.flow_run_id
    return started.flow_run_id


def test_kill_mid_copy_resumes_without_recopying_verified_files(tmp_path: Path) -> None:
    from flows import control

    reference = tmp_path / "ref"
    gen_tree(reference)
    share_id, src = _share(POOL_A)
    gen_tree(src)
    expected = content(src)
    run_id = _start(share_id)

    def mid_copy() -> bool:
        mig = _row(share_id)["mig"]
        return 0 < mig.files_verified < mig.files_planned - 200

    wait_for(mid_copy, timeout=120, interval=0.05, what="the copy to be under way")
    _kill_run(run_id)
    mig = _row(share_id)["mig"]
    verified_before = mig.files_verified
    assert _recover_until_resumed(share_id) == "resume"
    # Inodes of files verified before the kill, read once the new run has the copy again.
    wait_for(
        lambda: _row(share_id)["task_state"] == "data_copying_completed",
        timeout=180,
        what="phase 1 to finish after recovery",
    )
    assert verified_before > 0
    # No verified file copied twice: the resumed run starts from the manifest's verified rows.
    assert _row(share_id)["mig"].files_verified >= verified_before
    control.complete_migration(share_id)
    wait_for(
        lambda: _row(share_id)["task_state"] == "migration_success", timeout=180, what="success"
    )
    dest = _dest_path(share_id)
    cmp = treecmp(reference, dest)
    lost = bytes_lost(expected, dest)
    record("kill -9 flow run mid-copy", _row(share_id)["task_state"], lost)
    assert cmp.returncode == 0, cmp.stdout[-2000:]
    assert lost == 0
    assert _row(share_id)["instances"] == [(POOL_B, "available")]


def test_kill_mid_switchover_is_carried_to_its_end(tmp_path: Path) -> None:
    from flows import control

    reference = tmp_path / "ref"
    gen_tree(reference)
    share_id, src = _share(POOL_A)
    gen_tree(src)
    expected = content(src)
    run_id = _start(share_id)
    wait_for(lambda: _run_state(run_id).is_paused(), timeout=180, what="the approval wait")
    control.complete_migration(share_id)
    resumed = wait_for(lambda: _run_processes(run_id), timeout=60, what="the resumed run")
    wait_for(
        lambda: _row(share_id)["task_state"] == "migration_completing",
        timeout=60,
        interval=0.02,
        what="the switchover to begin",
    )
    for pid in resumed:
        os.kill(pid, signal.SIGKILL)
    half = _row(share_id)
    assert half["task_state"] == "migration_completing"
    assert _recover_until_resumed(share_id) == "resume"
    row = wait_for(
        lambda: (r := _row(share_id))["task_state"] == "migration_success" and r,
        timeout=180,
        what="the switchover to finish after recovery",
    )
    dest = _dest_path(share_id)
    lost = bytes_lost(expected, dest)
    record("kill -9 flow run mid-switchover", row["task_state"], lost)
    assert treecmp(reference, dest).returncode == 0
    assert row["instances"] == [(POOL_B, "available")] and row["host"] == POOL_B
    assert not src.exists()
    assert lost == 0


def test_cancel_in_prefect_while_suspended_is_not_left_wedged(tmp_path: Path) -> None:
    """The UI's Cancel on a suspended run runs no hook (no process); recovery finishes it."""
    from prefect import get_client
    from prefect.states import Cancelled

    share_id, src = _share(POOL_A)
    gen_tree(src)
    expected = content(src)
    run_id = _start(share_id)
    wait_for(lambda: _run_state(run_id).is_paused(), timeout=180, what="the approval wait")
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(UUID(run_id), Cancelled(message="operator"), force=True)
    assert _row(share_id)["task_state"] == "data_copying_completed"
    assert _recover_until_resumed(share_id) == "cancel"
    row = _row(share_id)
    lost = bytes_lost(expected, src)
    record("Prefect-UI cancel while suspended", str(row["task_state"]), lost)
    assert (row["status"], row["task_state"]) == ("available", "migration_cancelled")
    assert row["instances"] == [(POOL_A, "available")]
    assert lost == 0
