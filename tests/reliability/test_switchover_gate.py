"""The switchover's gate and its way back: never onto unverified data, back to waiting."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kit.reliability import POOL_A, POOL_B, instance_dirs, new_share, start


def _phase1(migration_id: str) -> None:
    from storage import migration_copy as copy
    from storage import migration_lifecycle as life

    life.begin(migration_id, None)
    life.reserve_destination(migration_id)
    life.choose_path(migration_id)
    copy.host_copy_round(migration_id)
    assert copy.host_finish(migration_id)


def test_no_switch_while_an_entry_is_unverified(pools: dict[str, Path]) -> None:
    from storage import migration_copy as copy
    from storage import migration_endings as endings
    from storage import migration_lifecycle as life
    from storage.errors import IncompleteCopyError

    share_id, src = new_share(POOL_A)
    (src / "a.txt").write_bytes(b"first")
    mig = start(share_id, POOL_B)
    _phase1(mig)
    assert life.status(mig).task_state == "data_copying_completed"
    assert life.take_decision(mig, True, None) == "complete"
    # A write that reached the source after phase 1: the test lifts the freeze, as a pool
    # that cannot enforce one would have let it through.
    from storage.source_freeze import lift_dir

    lift_dir(src)
    (src / "late.txt").write_bytes(b"written after phase 1")
    assert copy.host_plan(mig, final_sync=True)  # the walk found it: a batch to copy
    with pytest.raises(IncompleteCopyError, match="not verified"):
        copy.require_complete(mig)
    copy.host_copy_round(mig, final_sync=True, stoppable=False)
    assert copy.host_finish(mig, final_sync=True)
    copy.require_complete(mig)
    endings.switch_to_destination(mig)
    endings.delete_source(mig)
    endings.finish_success(mig)
    [dest] = instance_dirs(share_id)
    assert (dest / "late.txt").read_bytes() == b"written after phase 1"


def test_failed_switchover_goes_back_to_waiting_and_keeps_the_copy(
    pools: dict[str, Path],
) -> None:
    from sqlalchemy import func, select

    from storage import migration_endings as endings
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

    assert endings.return_to_waiting(mig, "driver error: injected")
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
    endings.switch_to_destination(mig)
    endings.delete_source(mig)
    endings.finish_success(mig)
    [dest] = instance_dirs(share_id)
    assert sorted(p.name for p in dest.iterdir()) == sorted(f"f{i}" for i in range(20))
    assert all((dest / f"f{i}").read_bytes() == b"x" * i for i in range(20))


def _refused(action: object) -> int:
    try:
        action()  # type: ignore[operator]
    except OSError as exc:
        return exc.errno or 0
    return 0


@pytest.mark.parametrize("ending", ["migration_cancelled", "migration_error"])
def test_source_is_frozen_while_copying_and_lifted_once_at_the_end(
    pools: dict[str, Path], ending: str
) -> None:
    import errno
    import os

    from storage import migration_endings as endings
    from storage.migration_freeze import lift_stale_freezes
    from storage.source_freeze import is_frozen

    denied = {errno.EROFS, errno.EACCES}
    share_id, src = new_share(POOL_A)
    (src / "keep.txt").write_bytes(b"original")
    (src / "sub").mkdir()
    mig = start(share_id, POOL_B)
    _phase1(mig)
    assert is_frozen(src)
    assert _refused(lambda: (src / "keep.txt").write_bytes(b"changed")) in denied
    assert _refused(lambda: (src / "new.txt").write_bytes(b"new")) in denied
    assert _refused(lambda: os.rename(src / "keep.txt", src / "moved.txt")) in denied
    assert _refused(lambda: os.unlink(src / "keep.txt")) in denied
    assert _refused(lambda: os.rmdir(src / "sub")) in denied
    assert (src / "keep.txt").read_bytes() == b"original"
    assert endings.abort(mig, ending, "test") == ending
    assert not is_frozen(src)
    (src / "keep.txt").write_bytes(b"writable again")
    assert lift_stale_freezes() == []  # lifted exactly once, nothing left over


def test_recovery_lifts_a_freeze_left_by_a_killed_run(pools: dict[str, Path]) -> None:
    from sqlalchemy import update

    from storage.db import session_scope
    from storage.migration_freeze import lift_stale_freezes
    from storage.models import Migration
    from storage.source_freeze import is_frozen

    share_id, src = new_share(POOL_A)
    (src / "f").write_bytes(b"x")
    mig = start(share_id, POOL_B)
    _phase1(mig)
    assert is_frozen(src)
    # A run killed after the migration's row ended but before it lifted the freeze.
    with session_scope() as s:
        s.execute(update(Migration).where(Migration.id == mig).values(active=False))
    assert len(lift_stale_freezes()) == 1
    assert not is_frozen(src)
    (src / "f").write_bytes(b"writable")
