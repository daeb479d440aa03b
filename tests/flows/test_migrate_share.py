"""End to end through a real Prefect server and worker: phase 1, suspended wait, decision."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import pytest

from tests.kit.bench_kit import gen_tree, treecmp
from tests.kit.flow_runs import processes_for_run, run_state, start_request
from tests.kit.prefect_service import POOL_A, POOL_B, POOL_BROKEN
from tests.kit.shares import db_share, migration_of, new_share, share_row, write_paced_tree
from tests.kit.waiting import wait_for, wait_task_state

pytestmark = pytest.mark.usefixtures("service_env")


def _wait_suspended(run_id: str, timeout: float = 120) -> bool:
    """Wait until the run is suspended; True if a process ran it at some point before."""
    seen_process = False

    def suspended() -> bool:
        nonlocal seen_process
        seen_process = seen_process or bool(processes_for_run(run_id))
        state = run_state(run_id)
        if state.is_final():
            raise AssertionError(f"run ended instead of waiting: {state.name} {state.message}")
        return state.is_paused()

    wait_for(suspended, timeout=timeout, interval=0.1, what=f"run {run_id} to suspend")
    return seen_process


def _run_log(run_id: str) -> str:
    """Every log line of the flow run and its subflows, as the Prefect UI shows them."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        runs = [UUID(run_id)] + [
            r.id
            for r in client.read_flow_runs(
                flow_run_filter=FlowRunFilter(parent_flow_run_id={"any_": [UUID(run_id)]})
            )
        ]
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=runs)))
    return "\n".join(log.message for log in logs)


def test_host_assisted_small_tree_through_approval(small_reference: Path) -> None:
    from prefect.flow_runs import resume_flow_run
    from prefect.input.run_input import keyset_from_paused_state

    from flows import control

    share = new_share(POOL_A)
    gen_tree(share.path)
    started = control.start_migration(
        share.share_id, start_request(POOL_B, force_host_assisted_migration=True)
    )
    assert started.flow_run_id and not started.noop

    ran_in_process = _wait_suspended(started.flow_run_id)
    row = share_row(share.share_id)
    assert (row["status"], row["task_state"]) == ("migrating", "data_copying_completed")
    assert run_state(started.flow_run_id).name == "Suspended"
    assert control.migration_progress(share.share_id).total_progress == 100
    mig = migration_of(share.share_id)
    assert mig.files_verified == mig.files_planned > 2000
    # The wait holds no process: the one that ran phase 1 exits once the run is suspended.
    assert ran_in_process
    wait_for(lambda: not processes_for_run(started.flow_run_id), timeout=30, what="exit")

    # While it waited, somebody damaged the destination: the switchover must notice and
    # copy those files again, not switch clients to a share with holes in it.
    (dest_location,) = [loc for _, pool, _, loc in row["instances"] if pool == POOL_B]
    dest = Path(str(share.path).replace("pool-a", "pool-b")).parent / dest_location
    victims = sorted(p for p in dest.rglob("*.txt") if p.is_file() and p.stat().st_size > 1)[:2]
    assert len(victims) == 2, "the tree has no text files to damage"
    victims[0].unlink()
    victims[1].write_bytes(victims[1].read_bytes()[:-1])

    resume_flow_run(UUID(started.flow_run_id), run_input={"approve": True, "reason": "ok"})
    row = wait_task_state(db_share(share.share_id), "migration_success", timeout=120)
    assert row["status"] == "available" and row["host"] == POOL_B
    assert [(pool, status) for _, pool, status, _ in row["instances"]] == [(POOL_B, "available")]
    assert not share.path.exists(), "the source instance's data must be deleted"
    assert dest.name == row["instances"][0][3]
    # The run's log (what the Prefect UI shows) says what was repaired; logs arrive in batches.
    wait_for(
        lambda: (
            "2 verified files changed or vanished at the destination"
            in _run_log(started.flow_run_id)
        ),
        timeout=30,
        what="the repair warning in the run's log",
    )
    cmp = treecmp(small_reference, dest)
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr
    mig = migration_of(share.share_id)
    assert (mig.mechanism, mig.outcome, mig.approval_reason) == ("host", "migration_success", "ok")
    keyset = keyset_from_paused_state(_first_suspended_state(started.flow_run_id))
    assert keyset["response"]


def _first_suspended_state(run_id: str) -> object:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        states = client.read_flow_run_states(UUID(run_id))
    return next(s for s in states if s.name == "Suspended")


def test_driver_assisted_approved_through_control() -> None:
    from flows import control

    share = new_share(POOL_A)
    (share.path / "hello.txt").write_text("driver path\n")
    started = control.start_migration(share.share_id, start_request(POOL_B))
    wait_task_state(db_share(share.share_id), "migration_driver_phase1_done")
    control.complete_migration(share.share_id, reason="ship it")
    row = wait_task_state(db_share(share.share_id), "migration_success")
    assert row["host"] == POOL_B and row["status"] == "available"
    mig = migration_of(share.share_id)
    assert mig.mechanism == "driver" and mig.flow_run_id == started.flow_run_id
    dest_pool_root = share.path.parent.parent / "pool-b"
    assert (dest_pool_root / row["instances"][0][3] / "hello.txt").read_text() == "driver path\n"
    assert not share.path.exists()


def test_reject_from_the_resume_form_keeps_the_source(tmp_path: Path) -> None:
    from prefect.flow_runs import resume_flow_run

    from flows import control

    share = new_share(POOL_A)
    (share.path / "data.bin").write_bytes(b"x" * 10000)
    started = control.start_migration(
        share.share_id, start_request(POOL_B, force_host_assisted_migration=True)
    )
    assert started.flow_run_id
    _wait_suspended(started.flow_run_id)
    dest_id = migration_of(share.share_id).dest_instance_id
    assert dest_id is not None
    # Frozen while it waits: writes refused, reads unchanged.
    _assert_frozen(share.path / "data.bin")
    resume_flow_run(UUID(started.flow_run_id), run_input={"approve": False, "reason": "not now"})
    row = wait_task_state(db_share(share.share_id), "migration_cancelled")
    (share.path / "after-reject").write_text("writable again")
    assert row["status"] == "available" and row["host"] == POOL_A
    assert [i[1] for i in row["instances"]] == [POOL_A]
    assert (share.path / "data.bin").read_bytes() == b"x" * 10000
    assert not (share.path.parent.parent / "pool-b" / f"share-{dest_id}").exists()
    assert migration_of(share.share_id).approval_reason == "not now"
    wait_for(lambda: run_state(started.flow_run_id).is_final(), timeout=60, what="run end")
    assert run_state(started.flow_run_id).is_cancelled()


def test_cancel_while_waiting_through_control() -> None:
    from flows import control

    share = new_share(POOL_A)
    (share.path / "f").write_text("keep me")
    started = control.start_migration(
        share.share_id, start_request(POOL_B, force_host_assisted_migration=True)
    )
    assert started.flow_run_id
    _wait_suspended(started.flow_run_id)
    control.cancel_migration(share.share_id)
    row = wait_task_state(db_share(share.share_id), "migration_cancelled", timeout=60)
    assert row["host"] == POOL_A and [i[1] for i in row["instances"]] == [POOL_A]
    assert (share.path / "f").read_text() == "keep me"


def test_cancel_while_copying_stops_the_copy(tmp_path: Path) -> None:
    from flows import control

    share = new_share(POOL_A)
    # Paced: the copy cannot finish before the cancel lands (a 500 MiB tree copied at full
    # speed once did).
    assert write_paced_tree(share.path, dirs=40) == 400
    started = control.start_migration(
        share.share_id, start_request(POOL_B, force_host_assisted_migration=True)
    )
    wait_task_state(db_share(share.share_id), "data_copying_in_progress")
    dest_id = migration_of(share.share_id).dest_instance_id
    control.cancel_migration(share.share_id, reason="wrong pool")
    assert share_row(share.share_id)["status"] == "migrating"
    # The share stays readable (and frozen) while the copy winds down.
    _assert_frozen(share.path / "d07" / "f004")
    assert (share.path / "d07" / "f004").read_bytes() == bytes([7, 4]) * 131072
    row = wait_task_state(db_share(share.share_id), "migration_cancelled", timeout=90)
    (share.path / "d07" / "after-cancel").write_text("writable again")
    assert row["status"] == "available" and row["host"] == POOL_A
    mig = migration_of(share.share_id)
    assert mig.files_verified < mig.files_planned, "the copy should have stopped early"
    assert not (share.path.parent.parent / "pool-b" / f"share-{dest_id}").exists()
    assert sum(1 for _ in share.path.rglob("f*")) == 400
    assert started.flow_run_id
    wait_for(lambda: run_state(started.flow_run_id).is_final(), timeout=60, what="run end")


def test_permanent_failure_ends_in_migration_error_with_source_untouched() -> None:
    from flows import control

    share = new_share(POOL_A)
    (share.path / "precious").write_text("unchanged")
    started = control.start_migration(
        share.share_id, start_request(POOL_BROKEN, force_host_assisted_migration=True)
    )
    row = wait_task_state(db_share(share.share_id), "migration_error", timeout=90)
    assert row["status"] == "available" and row["host"] == POOL_A
    assert [i[1] for i in row["instances"]] == [POOL_A]
    assert (share.path / "precious").read_text() == "unchanged"
    (share.path / "after-error").write_text("writable")
    mig = migration_of(share.share_id)
    assert "creating share storage on pool sharemig@localfs#broken failed" in mig.error
    assert started.flow_run_id
    wait_for(lambda: run_state(started.flow_run_id).is_final(), timeout=30, what="run end")
    assert run_state(started.flow_run_id).is_failed()
    # Permanent: the failing step ran once, it was not retried.
    assert _task_run_counts(started.flow_run_id)["reserve-destination"] == [1]


def _assert_frozen(existing: Path) -> None:
    """Write, create, rename and unlink in the source each fail; its bytes read the same."""
    import errno
    import os

    before = existing.read_bytes()
    attempts = [
        lambda: existing.write_bytes(b"changed"),
        lambda: (existing.parent / "created").write_bytes(b"new"),
        lambda: os.rename(existing, existing.parent / "renamed"),
        lambda: os.unlink(existing),
    ]
    for attempt in attempts:
        with pytest.raises(OSError) as refused:
            attempt()
        assert refused.value.errno in (errno.EROFS, errno.EACCES)
    assert existing.read_bytes() == before


def _task_run_counts(run_id: str) -> dict[str, list[int]]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(run_id)]))
        )
    counts: dict[str, list[int]] = {}
    for tr in runs:
        # Task run names are "<task name>-<random suffix>".
        counts.setdefault(tr.name.rsplit("-", 1)[0], []).append(tr.run_count)
    return counts


def test_failed_switchover_goes_back_to_waiting_and_a_later_approval_succeeds() -> None:
    """A destination the switchover cannot repair (a directory replaced by a file there):
    the switchover retries, gives up, and the migration waits again in a fresh suspended
    run with the source intact; fixed and approved again, it succeeds without copying the
    files it had verified again."""
    import shutil

    from flows import control
    from storage import migration_lifecycle as lifecycle

    share = new_share(POOL_A)
    (share.path / "keep.txt").write_text("verified once")
    (share.path / "d").mkdir()
    (share.path / "d" / "f.txt").write_text("inside d")
    started = control.start_migration(
        share.share_id, start_request(POOL_B, force_host_assisted_migration=True)
    )
    assert started.flow_run_id
    _wait_suspended(started.flow_run_id)
    mig = migration_of(share.share_id)
    dest = share.path.parent.parent / "pool-b" / f"share-{mig.dest_instance_id}"
    kept_inode = (dest / "keep.txt").stat().st_ino
    shutil.rmtree(dest / "d")
    (dest / "d").write_text("a file where the directory was")

    control.complete_migration(share.share_id)
    wait_for(
        lambda: lifecycle.status(mig.id).flow_run_id != started.flow_run_id,
        timeout=120,
        what="a new run after the switchover gave up",
    )
    row = wait_task_state(db_share(share.share_id), "data_copying_completed", timeout=60)
    assert row["status"] == "migrating" and row["host"] == POOL_A
    assert (share.path / "d" / "f.txt").read_text() == "inside d"
    progress = control.migration_progress(share.share_id)
    assert "waiting for approval again" in str(progress.details["switchover_error"])
    waiting_run = lifecycle.status(mig.id).flow_run_id
    assert waiting_run
    _wait_suspended(waiting_run)
    assert run_state(started.flow_run_id).is_completed()

    (dest / "d").unlink()
    control.complete_migration(share.share_id)
    row = wait_task_state(db_share(share.share_id), "migration_success", timeout=120)
    assert row["host"] == POOL_B
    assert (dest / "d" / "f.txt").read_text() == "inside d"
    assert (dest / "keep.txt").stat().st_ino == kept_inode, "a verified file was copied again"
