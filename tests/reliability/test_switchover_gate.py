"""The switchover's gate and its way back: never onto unverified data, back to waiting."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import POOL_A, POOL_B
from reliability_kit import instance_dirs, new_share, start


def _phase1(migration_id: str) -> None:
    from storage import migration_copy as copy
    from storage import migration_lifecycle as life

    life.begin(migration_id, None)
    life.reserve_destination(migration_id)
    life.choose_path(migration_id)
    for batch in copy.host_plan(migration_id):
        copy.host_copy_batch(migration_id, batch)
    assert copy.host_finish(migration_id)


def test_no_switch_while_an_entry_is_unverified(pools: dict[str, Path]) -> None:
    from storage import migration_copy as copy
    from storage import migration_lifecycle as life
    from storage.errors import IncompleteCopyError

    share_id, src = new_share(POOL_A)
    (src / "a.txt").write_bytes(b"first")
    mig = start(share_id, POOL_B)
    _phase1(mig)
    assert life.status(mig).task_state == "data_copying_completed"
    assert life.take_decision(mig, True, None) == "complete"
    # A write that reached the source after phase 1 (an unfrozen pool, a late descriptor).
    (src / "late.txt").write_bytes(b"written after phase 1")
    batches = copy.host_plan(mig, final_sync=True)
    assert batches
    with pytest.raises(IncompleteCopyError, match="not verified"):
        copy.require_complete(mig)
    for batch in batches:
        copy.host_copy_batch(mig, batch, stoppable=False)
    assert copy.host_finish(mig, final_sync=True)
    copy.require_complete(mig)
    life.switch_to_destination(mig)
    life.delete_source(mig)
    life.finish_success(mig)
    [dest] = instance_dirs(share_id)
    assert (dest / "late.txt").read_bytes() == b"written after phase 1"


def test_failed_switchover_goes_back_to_waiting_and_keeps_the_copy(
    pools: dict[str, Path],
) -> None:
    from sqlalchemy import func, select

    from storage import migration_lifecycle as life
    from storage.db import session_scope
    from storage.migration_admission import admit_complete, read_progress
    from storage.models.manifest import ManifestEntry

    share_id, src = new_share(POOL_A)
    for i in range(20):
        (src / f"f{i}").write_bytes(b"x" * i)
    mig = start(share_id, POOL_B)
    _phase1(mig)
    assert life.take_decision(mig, True, "go") == "complete"
    assert life.status(mig).task_state == "migration_completing"

    assert life.return_to_waiting(mig, "driver error: injected")
    st = life.status(mig)
    assert st.task_state == "data_copying_completed" and st.outcome is None
    assert st.requested_action is None
    with session_scope() as s:
        view = read_progress(s, share_id, project_id=None)
        assert "injected" in str(view.details["switchover_error"])
        # The operator approves again: the same request the API makes is admitted.
        admit_complete(s, share_id, project_id=None)
        verified = s.scalar(
            select(func.count())
            .select_from(ManifestEntry)
            .where(ManifestEntry.job_id == mig, ManifestEntry.state == "done")
        )
    assert verified and verified >= 20
    assert len(instance_dirs(share_id)) == 2  # source intact, destination kept
    life.switch_to_destination(mig)
    life.delete_source(mig)
    life.finish_success(mig)
    [dest] = instance_dirs(share_id)
    assert sorted(p.name for p in dest.iterdir()) == sorted(f"f{i}" for i in range(20))
    assert all((dest / f"f{i}").read_bytes() == b"x" * i for i in range(20))
