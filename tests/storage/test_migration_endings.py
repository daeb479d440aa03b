"""How a migration ends, on a real database and real localfs pools, without Prefect: the
switchover and success, back to waiting after a failed switchover, cancel and error with the
source intact, and an admin's reset respected. Once the destination is the share's, the only
way is forward."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from storage import migration_copy as copy
from storage import migration_endings as endings
from storage import migration_lifecycle as life
from storage.db import session_scope
from storage.errors import InvalidStateError
from storage.migration_admission import StartRequest, admit_start, reset_task_state
from storage.migration_state import TaskState
from storage.models import Migration
from storage.pools import driver_for
from storage.shares import active_instance, create_share, get_share, instances

S = TaskState
POOL_A, POOL_B = "h1@lfs#a", "h1@lfs#b"


def _to_pool_b(*, forced: bool = False) -> StartRequest:
    off = dict.fromkeys(
        ("preserve_metadata", "preserve_snapshots", "writable", "nondisruptive"), False
    )
    return StartRequest(host=POOL_B, force_host_assisted_migration=forced, **off)


def _phase1_done(db_url: str, *, files: int = 3) -> tuple[str, str, Path]:
    """A driver-assisted migration a -> b through phase 1 (`migration_driver_phase1_done`);
    returns (migration id, share id, the source's data directory)."""
    with session_scope(db_url) as s:
        share = create_share(s, project_id="p1", size=1, host=POOL_A)
        src = Path(driver_for(s, POOL_A).instance_url(active_instance(s, share).location))
        for i in range(files):
            (src / f"f{i}").write_bytes(bytes([i]) * 1000)
        mig = admit_start(s, share.id, _to_pool_b(), project_id=None)
        assert mig is not None
        mig_id, share_id = mig.id, share.id
    life.begin(mig_id, "run-1", db_url=db_url)
    life.reserve_destination(mig_id, db_url=db_url)
    assert life.choose_path(mig_id, db_url=db_url) == "driver"
    copy.driver_start(mig_id, db_url=db_url)
    while not copy.driver_continue(mig_id, db_url=db_url):
        pass
    assert life.status(mig_id, db_url=db_url).task_state == S.DRIVER_PHASE1_DONE
    return mig_id, share_id, src


def _share(db_url: str, share_id: str) -> tuple[str, str | None, str]:
    with session_scope(db_url) as s:
        share = get_share(s, share_id)
        return share.status, share.task_state, share.host


def _instances(db_url: str, share_id: str) -> dict[str, str]:
    with session_scope(db_url) as s:
        return {i.pool_name: i.status for i in instances(s, share_id)}


def _data(db_url: str, share_id: str) -> dict[str, bytes]:
    with session_scope(db_url) as s:
        share = get_share(s, share_id)
        root = Path(driver_for(s, share.host).instance_url(active_instance(s, share).location))
    return {p.name: p.read_bytes() for p in root.iterdir()}


def test_switchover_to_success(db_url: str, session: Session) -> None:
    mig, share, src = _phase1_done(db_url)
    assert life.take_decision(mig, True, None, db_url=db_url) == "complete"
    copy.driver_complete(mig, db_url=db_url)
    endings.switch_to_destination(mig, db_url=db_url)
    endings.switch_to_destination(mig, db_url=db_url)  # a retry after the switch: no-op
    assert _share(db_url, share) == ("migrating", S.COMPLETING, POOL_B)
    assert _instances(db_url, share) == {POOL_A: "inactive", POOL_B: "available"}
    with pytest.raises(InvalidStateError, match="can only be finished, not undone"):
        endings.abort(mig, S.CANCELLED, "too late", db_url=db_url)
    assert not endings.return_to_waiting(mig, "too late", db_url=db_url)
    assert endings.delete_source(mig, db_url=db_url) is None
    endings.finish_success(mig, db_url=db_url)
    endings.finish_success(mig, db_url=db_url)
    assert _share(db_url, share) == ("available", S.SUCCESS, POOL_B)
    assert _instances(db_url, share) == {POOL_B: "available"}
    assert _data(db_url, share) == {f"f{i}": bytes([i]) * 1000 for i in range(3)}
    assert not src.exists()
    status = life.status(mig, db_url=db_url)
    assert (status.outcome, status.active, status.percent) == (S.SUCCESS, False, 100)


def test_a_failed_switchover_goes_back_to_waiting_then_can_be_cancelled(
    db_url: str, session: Session
) -> None:
    mig, share, src = _phase1_done(db_url)
    life.take_decision(mig, True, "go", db_url=db_url)
    assert endings.return_to_waiting(mig, "destination went read-only", db_url=db_url)
    assert _share(db_url, share) == ("migrating", S.DRIVER_PHASE1_DONE, POOL_A)
    status = life.status(mig, db_url=db_url)
    assert status.requested_action is None  # approvable again, or cancellable
    assert status.error == (
        "switchover failed, waiting for approval again: destination went read-only"
    )
    assert life.approval_reason(mig, db_url=db_url) is None
    assert endings.abort(mig, S.CANCELLED, "operator gave up", db_url=db_url) == S.CANCELLED
    assert _share(db_url, share) == ("available", S.CANCELLED, POOL_A)
    assert _instances(db_url, share) == {POOL_A: "available"}
    assert sorted(p.name for p in src.iterdir()) == ["f0", "f1", "f2"]


@pytest.mark.parametrize("outcome", [S.CANCELLED, S.ERROR])
def test_abort_mid_copy_keeps_the_source_and_removes_the_destination(
    db_url: str, session: Session, outcome: TaskState
) -> None:
    with session_scope(db_url) as s:
        share = create_share(s, project_id="p1", size=1, host=POOL_A)
        mig_row = admit_start(s, share.id, _to_pool_b(forced=True), project_id=None)
        assert mig_row is not None
        mig, share_id = mig_row.id, share.id
    for target in (S.IN_PROGRESS, S.COPY_STARTING, S.COPY_IN_PROGRESS):
        life.set_task_state(mig, target, db_url=db_url)
    life.reserve_destination(mig, db_url=db_url)
    assert _instances(db_url, share_id) == {POOL_A: "available", POOL_B: "migrating_to"}
    assert endings.abort(mig, outcome, "stopped", db_url=db_url) == outcome
    assert _share(db_url, share_id) == ("available", outcome, POOL_A)
    assert _instances(db_url, share_id) == {POOL_A: "available"}
    assert life.status(mig, db_url=db_url).error == "stopped"
    # An earlier outcome wins over a later abort.
    other = S.ERROR if outcome == S.CANCELLED else S.CANCELLED
    assert endings.abort(mig, other, "again", db_url=db_url) == outcome
    with pytest.raises(ValueError, match="not migration_success"):
        endings.abort(mig, S.SUCCESS, "no", db_url=db_url)


def test_an_admin_reset_is_kept_when_the_migration_ends(db_url: str, session: Session) -> None:
    mig, share, _ = _phase1_done(db_url)
    with session_scope(db_url) as s:
        reset_task_state(s, share, None)
    assert endings.abort(mig, S.ERROR, "the admin took over", db_url=db_url) == S.ERROR
    assert _share(db_url, share) == ("available", None, POOL_A)
    with session_scope(db_url) as s:
        row = s.get(Migration, mig)
        assert row is not None
        assert (row.outcome, row.active, row.error) == (S.ERROR, False, "the admin took over")


def test_delete_source_only_deletes_a_retired_source(db_url: str, session: Session) -> None:
    mig, _, src = _phase1_done(db_url)
    with pytest.raises(InvalidStateError, match="only a retired one is deleted"):
        endings.delete_source(mig, db_url=db_url)
    assert src.is_dir()
