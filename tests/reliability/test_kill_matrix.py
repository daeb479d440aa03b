"""kill -9 at several points of a migration, on a real Prefect server, worker and API shim.

Killed: the flow run's processes, the worker (alone, and with its runs: a host crash), the
Prefect server, the shim; at: mid-plan, mid-copy, while waiting for approval, mid-switchover.
After a restart and `flows.recovery.recover_migrations` (what `sharemig up` runs at start),
every migration reaches the end an undisturbed one reaches: treecmp-identical data, no file
verified before the kill written again (same inode and ctime), a switchover carried to its
end (never half-done), and nothing left `migrating` with nobody on it.

One stack for the session (the `stack` fixture, tests/kit/kill_stack.py); trees of a
few hundred files and a bandwidth limit on the worker, so a copy lasts seconds and a kill
lands in it.
"""

from __future__ import annotations

import errno
import threading
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from tests.kit.bench_kit import treecmp
from tests.kit.kill_scenarios import (
    FINISH,
    START_BODY,
    approve_and_finish,
    assert_not_recopied,
    check_end,
    current_run,
    kill_runs,
    make_share,
    recover,
    recover_or_finish,
    row,
    run_state,
    running_task,
    start,
    verified_files,
    wait_mid_copy,
    wait_paused,
    wait_state,
)
from tests.kit.kill_stack import POOL_A, POOL_B, Stack
from tests.kit.reliability import bytes_lost, content, record
from tests.kit.waiting import wait_for

pytestmark = pytest.mark.slow


# --- the scenarios -------------------------------------------------------------------------


def test_flow_run_killed_mid_plan(stack: Stack, tmp_path: Path) -> None:
    # The stack paces walks (WALK_LIMIT entries/s): planning 500 files takes seconds.
    share_id, src, reference = make_share(stack, tmp_path, files=500, size=0)
    expected = content(src)
    start(share_id)
    wait_state(share_id, "data_copying_starting")
    kill_runs(share_id)
    killed_in = row(share_id)["task_state"]
    assert killed_in == "data_copying_starting", killed_in
    assert recover(share_id) == "resume"
    wait_paused(share_id)
    check_end(
        "kill -9 flow run mid-plan", share_id, approve_and_finish(share_id), reference, expected
    )


def test_flow_run_killed_mid_copy_then_mid_switchover(stack: Stack, tmp_path: Path) -> None:
    share_id, src, reference = make_share(stack, tmp_path)
    expected = content(src)
    start(share_id)
    wait_mid_copy(share_id)
    kill_runs(share_id)
    assert row(share_id)["task_state"] == "data_copying_in_progress"
    before = verified_files(share_id)
    assert recover(share_id) == "resume"
    wait_paused(share_id)
    assert_not_recopied(before, share_id)
    record("kill -9 flow run mid-copy", "resumed, phase 1 done", bytes_lost(expected, src))

    from flows import control

    control.complete_migration(share_id)

    # With the source frozen, the switchover walks it once for late writes (ctime) instead
    # of planning it again; from there it audits, switches the share and deletes the source:
    # kill it in that stretch (the stack paces that walk: it alone lasts over a second).
    def late_write_check_running() -> bool:
        assert row(share_id)["mig"].outcome is None, "the switchover ended before a poll saw it"
        return running_task("frozen-and-unchanged")

    wait_for(late_write_check_running, timeout=90, interval=0.02, what="the switchover")
    kill_runs(share_id)
    half = row(share_id)
    assert half["mig"].outcome is None, "the switchover ended before the kill landed"
    assert half["task_state"] == "migration_completing"
    where = "after the switch" if half["host"] == POOL_B else "before the switch"
    assert recover(share_id) == "resume"
    end = wait_state(share_id, "migration_success", "migration_error", timeout=FINISH)
    check_end(f"kill -9 flow run mid-switchover ({where})", share_id, end, reference, expected)
    assert not src.exists()


def test_worker_killed_alone_mid_copy(stack: Stack, tmp_path: Path) -> None:
    """The run outlives its worker for a moment, then ends itself (Prefect 3.9 marks it
    Crashed); recovery leaves it alone while it lives and resumes it once it is gone."""
    share_id, src, reference = make_share(stack, tmp_path)
    expected = content(src)
    start(share_id)
    wait_mid_copy(share_id)
    stack.kill_worker(with_runs=False)
    stack.start_worker()
    how = recover_or_finish(share_id)
    wait_paused(share_id)
    record("kill -9 worker alone mid-copy", how, bytes_lost(expected, src))
    end = approve_and_finish(share_id)
    check_end("kill -9 worker alone mid-copy: end", share_id, end, reference, expected)


def test_worker_killed_with_its_runs_mid_copy_and_while_waiting(
    stack: Stack, tmp_path: Path
) -> None:
    share_id, src, reference = make_share(stack, tmp_path)
    expected = content(src)
    start(share_id)
    wait_mid_copy(share_id)
    stack.kill_worker(with_runs=True)
    dead_run = current_run(share_id)
    assert run_state(dead_run).is_running()  # nobody told Prefect: a corpse marked Running
    before = verified_files(share_id)
    stack.start_worker()
    assert recover(share_id) == "resume"
    assert run_state(dead_run).is_crashed()
    wait_paused(share_id)
    assert_not_recopied(before, share_id)
    record("kill -9 worker with its runs mid-copy", "resumed, phase 1 done", 0)

    # Waiting holds no process: the worker's death changes nothing; approval still works.
    stack.kill_worker(with_runs=True)
    stack.start_worker()
    assert {r.share_id: r.action for r in _recover_all()}.get(share_id, "leave") == "leave"
    check_end(
        "kill -9 worker while waiting", share_id, approve_and_finish(share_id), reference, expected
    )


def _recover_all() -> list[Any]:
    from flows.recovery import recover_migrations

    return recover_migrations()


def test_prefect_server_killed_mid_copy_and_while_waiting(stack: Stack, tmp_path: Path) -> None:
    share_id, src, reference = make_share(stack, tmp_path)
    expected = content(src)
    start(share_id)
    wait_mid_copy(share_id)
    stack.kill_server()
    stack.start_server()
    # The run may carry on, or die reporting to a dead API: either way, phase 1 completes
    # (after recovery if needed) and the migration waits for approval.
    how = recover_or_finish(share_id)
    wait_paused(share_id)
    assert row(share_id)["mig"].outcome is None
    record("kill -9 Prefect server mid-copy", how, bytes_lost(expected, src))

    stack.kill_server()
    stack.start_server()
    wait_paused(share_id)
    check_end(
        "kill -9 Prefect server while waiting",
        share_id,
        approve_and_finish(share_id),
        reference,
        expected,
    )


def test_shim_killed_mid_start_and_while_waiting(stack: Stack, tmp_path: Path) -> None:
    """Killed between admitting the start and creating its run: recovery starts the run."""
    import httpx

    share_id, src, reference = make_share(stack, tmp_path)
    expected = content(src)
    stack.pause_server(True)  # the shim's run creation hangs right after admission
    try:
        with stack.client() as api:
            answer: list[Any] = []
            post = threading.Thread(
                target=lambda: answer.append(
                    _swallow(lambda: api.post(f"/shares/{share_id}/action", json=START_BODY))
                ),
                daemon=True,
            )
            post.start()
            wait_state(share_id, "migration_starting", timeout=30)
            stack.kill_shim()
            post.join(timeout=30)
    finally:
        stack.pause_server(False)
    assert not answer or isinstance(answer[0], httpx.TransportError), answer
    assert row(share_id)["mig"].flow_run_id is None
    stack.start_shim()
    assert recover(share_id, grace=0) == "resume"
    wait_paused(share_id)
    record("kill -9 shim mid-start", "resumed, phase 1 done", bytes_lost(expected, src))

    stack.kill_shim()
    stack.start_shim()
    with stack.client() as api:
        assert api.get(f"/shares/{share_id}/migration-progress").json()["total_progress"] == 100
        assert (
            api.post(f"/shares/{share_id}/action", json={"migration_complete": None}).status_code
            == 202
        )
    end = wait_state(share_id, "migration_success", "migration_error", timeout=FINISH)
    check_end("kill -9 shim while waiting", share_id, end, reference, expected)


def _swallow(call: Any) -> Any:
    try:
        return call()
    except Exception as exc:
        return exc


def test_cancel_in_prefect_while_suspended_is_not_left_wedged(stack: Stack, tmp_path: Path) -> None:
    """The UI's Cancel on a suspended run runs no hook (no process); recovery finishes it."""
    from prefect import get_client
    from prefect.states import Cancelled

    share_id, src, _ = make_share(stack, tmp_path, files=40)
    expected = content(src)
    start(share_id)
    wait_paused(share_id)
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(
            UUID(current_run(share_id)), Cancelled(message="operator"), force=True
        )
    assert row(share_id)["task_state"] == "data_copying_completed"
    assert recover(share_id) == "cancel"
    end = row(share_id)
    lost = bytes_lost(expected, src)
    record("Prefect-UI cancel while suspended", str(end["task_state"]), lost)
    assert (end["status"], end["task_state"]) == ("available", "migration_cancelled")
    assert end["instances"] == [(POOL_A, "available")]
    assert lost == 0


def _writes_refused(root: Path) -> bool:
    """A client write (create) into `root` fails with EROFS; nothing is left behind."""
    try:
        (root / "client-write.tmp").write_bytes(b"late")
    except OSError as exc:
        return exc.errno in (errno.EROFS, errno.EACCES)
    (root / "client-write.tmp").unlink()
    return False


def test_flow_run_killed_while_frozen_then_cancelled_leaves_the_source_writable(
    stack: Stack, tmp_path: Path
) -> None:
    """The freeze is a mount: it outlives the killed run, so no client write slips in while
    nobody runs the migration; recovery's cancel lifts it, once, with the source intact."""
    from flows import control
    from storage.source_freeze import frozen_under

    share_id, src, reference = make_share(stack, tmp_path)
    expected = content(src)
    start(share_id)
    wait_mid_copy(share_id)
    assert _writes_refused(src), "the source is writable while phase 1 copies"
    kill_runs(share_id)
    assert _writes_refused(src), (
        f"the source took a write after its run was killed; frozen now: "
        f"{frozen_under(stack.root)}; migration error: {row(share_id)['mig'].error}"
    )
    assert (src / "link").readlink() == Path("d0/s0/f0000.bin")  # reads still work
    # If the worker already reported the killed run crashed, the cancel cleans up at once;
    # if not, the run is a corpse to Prefect, only the request is recorded, and recovery
    # (once the run's lease expired) does the cleanup.
    control.cancel_migration(share_id)
    if row(share_id)["mig"].outcome is None:
        assert _writes_refused(src), "the source was unfrozen before the migration ended"
        assert recover(share_id) == "cancel"
    end = row(share_id)
    lost = bytes_lost(expected, src)
    record("kill -9 flow run while frozen, then cancel", str(end["task_state"]), lost)
    assert (end["status"], end["task_state"]) == ("available", "migration_cancelled")
    assert treecmp(reference, src).returncode == 0
    assert lost == 0
    assert frozen_under(stack.root) == []
    assert not _writes_refused(src), "the source is still frozen after the cancel"
