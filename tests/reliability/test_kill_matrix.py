"""kill -9 at several points of a migration, on a real Prefect server, worker and API shim.

Killed: the flow run's processes, the worker (alone, and with its runs: a host crash), the
Prefect server, the shim; at: mid-plan, mid-copy, while waiting for approval, mid-switchover.
After a restart and `flows.recovery.recover_migrations` (what `sharemig up` runs at start),
every migration reaches the end an undisturbed one reaches: treecmp-identical data, no file
verified before the kill written again (same inode and ctime), a switchover carried to its
end (never half-done), and nothing left `migrating` with nobody on it.

One stack for the session (the `stack` fixture, tests/reliability/kill_stack.py); trees of a
few hundred files and a bandwidth limit on the worker, so a copy lasts seconds and a kill
lands in it.
"""

from __future__ import annotations

import errno
import os
import subprocess
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from conftest import record
from kill_stack import POOL_A, POOL_B, PROJECT, Stack, kill9, processes_with_env
from prefect_service import wait_for
from reliability_kit import bytes_lost, content, local_path, treecmp

pytestmark = pytest.mark.slow

PHASE1 = 180
FINISH = 180


# --- trees and shares ----------------------------------------------------------------------


def write_tree(root: Path, files: int = 240, size: int = 40 * 1024) -> None:
    """`files` files of distinct content (sizes vary around `size`), a symlink, fixed times."""
    for i in range(files):
        path = root / f"d{i % 8}" / f"s{i % 3}" / f"f{i:04d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        n = size // 2 + (i * 7919) % size if size else i % 64
        path.write_bytes((f"{i}:".encode() * (n // 2 + 1))[:n])
        os.utime(path, ns=(1_600_000_000_000_000_000 + i, 1_600_000_000_000_000_000 + i))
    (root / "link").symlink_to("d0/s0/f0000.bin")


def make_share(stack: Stack, tmp_path: Path, **tree: int) -> tuple[str, Path, Path]:
    """A share on pool A holding a tree; returns (share id, its data dir, a `cp -a` copy)."""
    from storage.db import session_scope
    from storage.pools import driver_for
    from storage.shares import active_instance, create_share

    with session_scope() as s:
        share = create_share(s, project_id=PROJECT, size=1, host=POOL_A)
        inst = active_instance(s, share)
        share_id = share.id
        src = local_path(driver_for(s, POOL_A).instance_url(inst.location))
    write_tree(src, **tree)
    reference = tmp_path / f"ref-{share_id}"
    subprocess.run(["cp", "-a", str(src), str(reference)], check=True)
    return share_id, src, reference


def start(share_id: str) -> str:
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


START_BODY = {
    "migration_start": {
        "host": POOL_B,
        "preserve_metadata": False,
        "preserve_snapshots": False,
        "writable": False,
        "nondisruptive": False,
        "force_host_assisted_migration": True,
    }
}


# --- reading the state ---------------------------------------------------------------------


def row(share_id: str) -> dict[str, Any]:
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
            "instances": sorted((i.pool_name, i.status) for i in instances(s, share_id)),
            "mig": mig,
        }


# A host-assisted migration's task states in the order it passes them, then its ends.
ORDER = (
    "migration_starting",
    "migration_in_progress",
    "data_copying_starting",
    "data_copying_in_progress",
    "data_copying_completing",
    "data_copying_completed",
    "migration_completing",
)
ENDS = ("migration_success", "migration_error", "migration_cancelled")


def _went_past(state: str | None, targets: tuple[str, ...]) -> bool:
    """True once `state` is after every target: the one awaited was skipped or is over."""
    if state is None or state in targets:
        return False
    if state in ENDS:
        return True
    ranks = [ORDER.index(t) for t in targets if t in ORDER]
    return state in ORDER and bool(ranks) and ORDER.index(state) > max(ranks)


def wait_state(share_id: str, *states: str, timeout: float = PHASE1) -> dict[str, Any]:
    """Until the share is in one of `states`; fails at once if it went past them all."""
    seen: list[str | None] = []

    def reached() -> dict[str, Any] | None:
        r = row(share_id)
        if not seen or seen[-1] != r["task_state"]:
            seen.append(r["task_state"])
        assert not _went_past(r["task_state"], states), f"share {share_id} went past {states}"
        return r if r["task_state"] in states else None

    try:
        return wait_for(  # type: ignore[no-any-return]
            reached, timeout=timeout, interval=0.05, what=f"share {share_id} to reach {states}"
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}; task_state went {' -> '.join(map(str, seen))}") from None


def run_state(run_id: str) -> Any:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(run_id)).state


def current_run(share_id: str) -> str:
    return str(row(share_id)["mig"].flow_run_id)


def wait_paused(share_id: str) -> None:
    wait_state(share_id, "data_copying_completed")
    wait_for(
        lambda: (st := run_state(current_run(share_id))) is not None and st.is_paused(),
        timeout=60,
        what="the run to suspend for approval",
    )


def dest_dir(share_id: str) -> Path:
    from storage.db import session_scope
    from storage.models import ShareInstance
    from storage.pools import driver_for

    mig = row(share_id)["mig"]
    with session_scope() as s:
        inst = s.get(ShareInstance, mig.dest_instance_id)
        assert inst is not None
        return local_path(driver_for(s, inst.pool_name).instance_url(inst.location))


def verified_files(share_id: str) -> dict[bytes, tuple[int, int, int]]:
    """Destination (inode, ctime_ns, mtime_ns) of every file the manifest records verified.

    A file the mover wrote again after the kill would have a new inode or a new ctime.
    """
    from sqlalchemy import select

    from storage.db import session_scope
    from storage.models import ManifestEntry

    mig = row(share_id)["mig"]
    dest = dest_dir(share_id)
    with session_scope() as s:
        paths = s.scalars(
            select(ManifestEntry.path).where(
                ManifestEntry.job_id == (mig.copy_job_id or mig.id),
                ManifestEntry.kind == "file",
                ManifestEntry.state == "done",
                ManifestEntry.dst_hash.is_not(None),
            )
        ).all()
    found = {}
    for rel in paths:
        st = os.lstat(os.path.join(os.fsencode(dest), rel))
        found[rel] = (st.st_ino, st.st_ctime_ns, st.st_mtime_ns)
    return found


def kill_runs(share_id: str) -> list[int]:
    """SIGKILL every process of the migration's current run (flow, forkserver, copiers)."""
    run_id = current_run(share_id)
    pids = wait_for(
        lambda: processes_with_env(f"PREFECT__FLOW_RUN_ID={run_id}"),
        timeout=60,
        interval=0.05,
        what="the run's processes",
    )
    kill9(pids)
    return list(pids)


def recover(share_id: str, *, grace: float | None = None) -> str:
    """Run recovery until it acts on this share; returns the action (resume / cancel)."""
    from flows.recovery import recover_migrations

    kwargs: dict[str, Any] = {}
    if grace is not None:
        kwargs["run_creation_grace"] = timedelta(seconds=grace)

    def acted() -> str | None:
        for r in recover_migrations(**kwargs):
            if r.share_id == share_id and r.action != "leave":
                return r.action
        return None

    return str(wait_for(acted, timeout=90, interval=1, what="recovery of the migration"))


def recover_or_finish(share_id: str) -> str:
    """Recovery rounds until phase 1 is done (the run carried on) or recovery acted."""
    from flows.recovery import recover_migrations

    def settled() -> str | None:
        if row(share_id)["task_state"] == "data_copying_completed":
            return "the run carried on"
        for r in recover_migrations():
            if r.share_id == share_id and r.action != "leave":
                return f"recovery: {r.action} (run {r.run_state})"
        return None

    return str(wait_for(settled, timeout=PHASE1, interval=1, what="phase 1 or recovery"))


# The states before the copy's end: past them, "mid-copy" can no longer come.
COPYING = (
    "migration_starting",
    "migration_in_progress",
    "data_copying_starting",
    "data_copying_in_progress",
)


def wait_mid_copy(share_id: str) -> None:
    """Until the walk is done and some, but less than half, of the files are verified.

    The stack's pacing (kill_stack.BANDWIDTH) keeps that stretch seconds long; should a copy
    still get past it between two polls, this fails at once instead of at the timeout.
    """
    seen: list[tuple[str | None, int, int]] = []

    def under_way() -> bool:
        r = row(share_id)
        mig = r["mig"]
        seen.append((r["task_state"], mig.files_verified, mig.files_planned))
        assert r["task_state"] in COPYING, f"phase 1 ended before a poll saw it: {seen[-5:]}"
        return bool(
            r["task_state"] == "data_copying_in_progress"
            and 0 < mig.files_verified < mig.files_planned // 2
        )

    wait_for(under_way, timeout=PHASE1, interval=0.05, what="the copy to be under way")


def approve_and_finish(share_id: str) -> dict[str, Any]:
    from flows import control

    control.complete_migration(share_id)
    return wait_state(share_id, "migration_success", "migration_error", timeout=FINISH)


def check_end(
    scenario: str, share_id: str, end: dict[str, Any], reference: Path, expected: Any
) -> None:
    """Same end as an undisturbed migration: success, one instance on B, identical tree."""
    dest = dest_dir(share_id)
    lost = bytes_lost(expected, dest)
    cmp = treecmp(reference, dest)
    record(scenario, str(end["task_state"]), lost)
    assert end["task_state"] == "migration_success", end["mig"].error
    assert cmp.returncode == 0, cmp.stdout[-2000:]
    assert lost == 0
    assert end["instances"] == [(POOL_B, "available")] and end["host"] == POOL_B


def assert_not_recopied(before: dict[bytes, tuple[int, int, int]], share_id: str) -> None:
    after = verified_files(share_id)
    assert before, "no file was verified before the kill: the scenario proves nothing"
    changed = [p for p, stamp in before.items() if after.get(p) != stamp]
    assert not changed, f"{len(changed)} files verified before the kill were written again"


def running_task(name: str) -> bool:
    """A task run called `name` is running now (in any flow run of this stack)."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        TaskRunFilter,
        TaskRunFilterName,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(
                name=TaskRunFilterName(like_=name),
                state=TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.RUNNING])),
            )
        )
    return bool(runs)


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
