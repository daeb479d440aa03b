"""Admission on a real database, no HTTP and no Prefect: `check_start`'s rules in the
contract's order (§5.2), what each task_state lets complete/cancel/progress do (§9.4), the
repairs (§12.4), the start withdrawn when no run can be made, and requests that race (the
database decides; the loser gets the contract's error).

`tests/api_shim` keeps the codes and fault bodies these refusals become over HTTP.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from storage import migration_endings as endings
from storage import migration_lifecycle as life
from storage.catalog import create_share_network, create_share_type
from storage.db import session_scope
from storage.errors import (
    ConflictError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
    SharemigError,
)
from storage.migration_admission import (
    WITHDRAWN,
    StartRequest,
    admit_cancel,
    admit_complete,
    admit_start,
    check_start,
    read_progress,
    reset_task_state,
    withdraw_start,
)
from storage.migration_state import TaskState
from storage.models import Migration, Pool
from storage.shares import (
    allow_access,
    create_share,
    create_snapshot,
    delete_share,
    get_share,
)
from tests.kit.shares import put_in_state

POOL_A, POOL_B, POOL_OBJ = "h1@lfs#a", "h1@lfs#b", "h2@obj#bucket"
S = TaskState
ROUNDS = 8


def start_request(host: str = POOL_B, **changes: Any) -> StartRequest:
    flags = dict(preserve_metadata=False, preserve_snapshots=False, writable=False)
    return StartRequest(**{"host": host, "nondisruptive": False, **flags, **changes})


def new_share(db_url: str, size: int = 1, host: str = POOL_A) -> str:
    with session_scope(db_url) as s:
        return create_share(s, project_id="p1", size=size, host=host).id


def share_row(db_url: str, share_id: str) -> tuple[str, str | None, str]:
    with session_scope(db_url) as s:
        share = get_share(s, share_id)
        return share.status, share.task_state, share.host


def migrations_of(db_url: str, share_id: str) -> list[Migration]:
    with session_scope(db_url) as s:
        rows = list(s.scalars(select(Migration).where(Migration.share_id == share_id)))
        s.expunge_all()
        return rows


def admit(db_url: str, share_id: str, req: StartRequest) -> Migration | None:
    with session_scope(db_url) as s:
        return admit_start(s, share_id, req, project_id=None)


def refused(db_url: str, share_id: str, req: StartRequest) -> SharemigError:
    """The error `admit_start` raises for `req`; the share is left as it was."""
    before = share_row(db_url, share_id)
    with pytest.raises(SharemigError) as err:
        admit(db_url, share_id, req)
    assert share_row(db_url, share_id) == before
    return err.value


# --- §5.2, in order ---------------------------------------------------------------------------


def test_unknown_share_is_not_found(db_url: str, session: Session) -> None:
    with pytest.raises(NotFoundError, match="no-such-share"):
        admit(db_url, "no-such-share", start_request())


def test_unknown_network_and_type_come_before_the_flag_combination(
    db_url: str, session: Session
) -> None:
    share = new_share(db_url)
    forced = dict(force_host_assisted_migration=True, writable=True)
    err = refused(db_url, share, start_request(new_share_network_id="nope", **forced))
    assert isinstance(err, InvalidInputError) and "Share network nope not found" in str(err)
    err = refused(db_url, share, start_request(new_share_type_id="nope", **forced))
    assert isinstance(err, InvalidInputError) and "Share type nope not found" in str(err)
    for flag in ("preserve_metadata", "preserve_snapshots", "writable", "nondisruptive"):
        req = start_request(force_host_assisted_migration=True, **{flag: True})
        err = refused(db_url, share, req)
        assert isinstance(err, InvalidInputError)
        assert "Invalid parameter combination" in str(err)


def test_share_must_be_available_and_not_busy(db_url: str, session: Session) -> None:
    migrating, reset = new_share(db_url), new_share(db_url)
    put_in_state(db_url, migrating, S.COPY_IN_PROGRESS)
    err = refused(db_url, migrating, start_request())
    assert isinstance(err, InvalidStateError) and "current status is: migrating" in str(err)
    # An admin reset the status but not the task_state: the busy check (step 13) catches it.
    put_in_state(db_url, reset, S.COPY_IN_PROGRESS, status="available")
    err = refused(db_url, reset, start_request())
    assert isinstance(err, InvalidStateError) and "busy with an active task" in str(err)


def test_an_access_rule_in_error_blocks_the_start(db_url: str, session: Session) -> None:
    share = new_share(db_url)
    with session_scope(db_url) as s:
        allow_access(s, share, "ip", "10.0.0.1").state = "error"
    err = refused(db_url, share, start_request())
    assert isinstance(err, InvalidStateError) and "access rules in error state" in str(err)


def test_forced_host_copy_with_snapshots_is_a_conflict(db_url: str, session: Session) -> None:
    share = new_share(db_url)
    with session_scope(db_url) as s:
        create_snapshot(s, share)
    err = refused(db_url, share, start_request(force_host_assisted_migration=True))
    assert isinstance(err, ConflictError) and "has snapshots" in str(err)
    # Without force, snapshots do not block the checks: the next failing step answers.
    err = refused(db_url, share, start_request(host="nohost@nobackend#p"))
    assert isinstance(err, NotFoundError)


@pytest.mark.parametrize(
    "host", ["", "not a host", "nohost@nobackend#p", "nohost@nobackend", "h2@obj#bucket", "@#"]
)
def test_unknown_or_disabled_service_is_not_found(db_url: str, session: Session, host: str) -> None:
    share = new_share(db_url)
    with session_scope(db_url) as s:
        pool = s.get(Pool, POOL_OBJ)
        assert pool is not None
        pool.enabled = False  # h2@obj: a service whose only pool is disabled
    err = refused(db_url, share, start_request(host=host))
    assert isinstance(err, NotFoundError)
    assert f"ServiceNotFound: Service {host.split('#')[0]} could not be found" in str(err)


@pytest.mark.parametrize(
    ("host", "says"), [("h1@lfs#nosuchpool", "does not exist"), ("h1@lfs", "names no pool")]
)
def test_unknown_pool_on_a_known_service_names_the_pools(
    db_url: str, session: Session, host: str, says: str
) -> None:
    err = refused(db_url, new_share(db_url), start_request(host=host))
    assert isinstance(err, InvalidInputError) and says in str(err)
    assert f"{POOL_A}, {POOL_B}" in str(err)


def _type(db_url: str, **specs: object) -> str:
    with session_scope(db_url) as s:
        return create_share_type(
            s, f"t-{uuid.uuid4().hex[:8]}", {"driver_handles_share_servers": False, **specs}
        ).id


def test_share_type_and_network_rules(db_url: str, session: Session) -> None:
    share = new_share(db_url, size=2)
    with session_scope(db_url) as s:
        net = create_share_network(s, "p1").id
    cases: list[tuple[StartRequest, str]] = [
        (
            start_request(new_share_type_id=_type(db_url, **{"provisioning:min_share_size": 5})),
            "min_share_size 5",
        ),
        (
            start_request(new_share_type_id=_type(db_url, **{"provisioning:max_share_size": 1})),
            "max_share_size 1",
        ),
        (
            start_request(new_share_type_id=_type(db_url, driver_handles_share_servers=True)),
            "needs a share network",
        ),
        (start_request(new_share_network_id=net), "New share network must not be provided"),
        (
            start_request(
                new_share_type_id=_type(
                    db_url, snapshot_support=True, availability_zones="elsewhere"
                )
            ),
            "limited to availability zones elsewhere",
        ),
    ]
    for req, says in cases:
        err = refused(db_url, share, req)
        assert isinstance(err, InvalidInputError) and says in str(err), (says, err)


def test_a_destination_without_room_is_refused_with_its_free_space(
    db_url: str, session: Session
) -> None:
    share = new_share(db_url, size=15, host=POOL_B)
    err = refused(db_url, share, start_request(host=POOL_A))
    assert isinstance(err, InvalidInputError)
    assert f"Pool {POOL_A} cannot take share" in str(err) and "10 GiB free" in str(err)


def test_same_host_is_a_no_op_even_after_a_finished_migration(
    db_url: str, session: Session
) -> None:
    share = new_share(db_url)
    assert admit(db_url, share, start_request(host=POOL_A)) is None
    assert share_row(db_url, share) == ("available", S.SUCCESS, POOL_A)
    assert migrations_of(db_url, share) == []
    assert admit(db_url, share, start_request(host=POOL_A)) is None  # success does not block


def test_check_start_acts_on_nothing(db_url: str, session: Session) -> None:
    share = new_share(db_url)
    with session_scope(db_url) as s:
        check = check_start(s, share, start_request(), project_id=None)
        assert (check.pool.name, check.noop, check.network) == (POOL_B, False, None)
    assert share_row(db_url, share) == ("available", None, POOL_A)
    assert migrations_of(db_url, share) == []


def test_an_admitted_start_reserves_and_supersedes_a_reset_migration(
    db_url: str, session: Session
) -> None:
    share = new_share(db_url)
    old = put_in_state(db_url, share, S.COPY_IN_PROGRESS)
    with session_scope(db_url) as s:  # the operator's repair of a stuck share
        reset_task_state(s, share, None)
        get_share(s, share).status = "available"
    mig = admit(db_url, share, start_request())
    assert mig is not None
    assert share_row(db_url, share) == ("migrating", S.STARTING, POOL_A)
    rows = {m.id: m for m in migrations_of(db_url, share)}
    assert (rows[old].active, rows[old].outcome) == (False, "superseded")
    assert (rows[mig.id].active, rows[mig.id].dest_host) == (True, POOL_B)


# --- a start whose run could not be created -----------------------------------------------------


@pytest.mark.parametrize("before", [None, S.SUCCESS, S.CANCELLED])
def test_a_withdrawn_start_leaves_the_share_as_it_was(
    db_url: str, session: Session, before: TaskState | None
) -> None:
    share = new_share(db_url)
    with session_scope(db_url) as s:
        get_share(s, share).task_state = before
    mig = admit(db_url, share, start_request())
    assert mig is not None
    with session_scope(db_url) as s:
        assert withdraw_start(s, mig.id, before, "Prefect did not answer")
    assert share_row(db_url, share) == ("available", before, POOL_A)
    (row,) = migrations_of(db_url, share)
    assert (row.active, row.outcome) == (False, WITHDRAWN)
    assert row.error == "start withdrawn: Prefect did not answer"
    with session_scope(db_url) as s:  # a second withdraw finds nothing to undo
        assert not withdraw_start(s, mig.id, before, "again")


def test_a_start_a_run_picked_up_is_not_withdrawn(db_url: str, session: Session) -> None:
    share = new_share(db_url)
    mig = admit(db_url, share, start_request())
    assert mig is not None
    life.begin(mig.id, "run-1", db_url=db_url)
    with session_scope(db_url) as s:
        assert not withdraw_start(s, mig.id, None, "lost answer")
    assert share_row(db_url, share) == ("migrating", S.IN_PROGRESS, POOL_A)
    with session_scope(db_url) as s, pytest.raises(InvalidStateError, match="not a state"):
        withdraw_start(s, mig.id, S.COPY_IN_PROGRESS.value, "from a busy state")


# --- §9.4: what each task_state allows ----------------------------------------------------------

STATES: list[TaskState | None] = [None, *(s for s in TaskState if s != S.CANCEL_IN_PROGRESS)]
STATES.remove(S.COPY_CANCELLED)
STATES.remove(S.COPY_ERROR)
PHASE1_DONE = {S.DRIVER_PHASE1_DONE, S.COPY_COMPLETED}
# Cancel is accepted in every phase-1 state, not only the reference's four (contract §14.1).
NOT_CANCELLABLE = {None, S.COMPLETING, S.SUCCESS, S.ERROR, S.CANCELLED}
PROGRESS = {
    S.STARTING: 0,
    S.IN_PROGRESS: 0,
    S.DRIVER_STARTING: 0,
    S.COPY_STARTING: 0,
    S.DRIVER_IN_PROGRESS: 0,
    S.COPY_IN_PROGRESS: 0,
    S.DRIVER_PHASE1_DONE: 100,
    S.COPY_COMPLETING: 100,
    S.COPY_COMPLETED: 100,
    S.COMPLETING: 100,
    S.SUCCESS: 100,
    # Where the reference says 100 (it reads as success, §14.3): how far it got.
    S.ERROR: 0,
    S.CANCELLED: 0,
}


@pytest.mark.parametrize("state", STATES, ids=str)
def test_state_table(db_url: str, session: Session, state: TaskState | None) -> None:
    share = new_share(db_url)
    if state is not None:
        put_in_state(db_url, share, state)
    if share_row(db_url, share)[0] == "migrating":
        assert isinstance(refused(db_url, share, start_request()), InvalidStateError)
    with session_scope(db_url) as s:
        if state is None:
            with pytest.raises(InvalidStateError, match="no migration being performed"):
                read_progress(s, share, project_id=None)
        else:
            view = read_progress(s, share, project_id=None)
            assert (view.total_progress, view.task_state) == (PROGRESS[state], state)
    if state in PHASE1_DONE:
        with session_scope(db_url) as s:
            mig = admit_complete(s, share, project_id=None)
            assert mig.requested_action == "complete" and mig.complete_requested_at
        assert share_row(db_url, share)[1] == S.COMPLETING
        return
    with session_scope(db_url) as s, pytest.raises(InvalidStateError):
        admit_complete(s, share, project_id=None)
    if state in NOT_CANCELLABLE:
        with session_scope(db_url) as s, pytest.raises(InvalidStateError):
            admit_cancel(s, share, project_id=None)
        assert share_row(db_url, share)[1] == state
        return
    with session_scope(db_url) as s:
        mig = admit_cancel(s, share, project_id=None)
    assert mig.requested_action == "cancel"
    assert share_row(db_url, share)[1] == state  # the cancel itself moves nothing
    # No run exists yet, so the cancel finishes at once (flows.control aborts it).
    assert endings.abort(mig.id, S.CANCELLED, "cancelled", db_url=db_url) == S.CANCELLED
    assert share_row(db_url, share)[:2] == ("available", S.CANCELLED)


@pytest.mark.parametrize(
    ("state", "says"),
    [
        (S.SUCCESS, "has already completed"),
        (S.CANCELLED, "was already cancelled"),
        (S.ERROR, "no migration being performed"),
        (S.COPY_IN_PROGRESS, "not completed yet"),
    ],
)
def test_refused_completes_say_why(
    db_url: str, session: Session, state: TaskState, says: str
) -> None:
    share = new_share(db_url)
    put_in_state(db_url, share, state)
    with session_scope(db_url) as s, pytest.raises(InvalidStateError, match=says):
        admit_complete(s, share, project_id=None)


def test_cancel_after_complete_and_complete_after_cancel_are_refused(
    db_url: str, session: Session
) -> None:
    share = new_share(db_url)
    put_in_state(db_url, share, S.DRIVER_PHASE1_DONE)
    with session_scope(db_url) as s:
        admit_complete(s, share, project_id=None)
    with session_scope(db_url) as s, pytest.raises(InvalidStateError, match="cannot be cancel"):
        admit_cancel(s, share, project_id=None)
    other = new_share(db_url)
    put_in_state(db_url, other, S.COPY_COMPLETED, requested_action="cancel")
    with session_scope(db_url) as s, pytest.raises(InvalidStateError, match="'cancel' request"):
        admit_complete(s, other, project_id=None)
    assert share_row(db_url, other)[1] == S.COPY_COMPLETED


def test_a_busy_share_without_a_migration_row_says_how_to_repair_it(
    db_url: str, session: Session
) -> None:
    share = new_share(db_url)
    with session_scope(db_url) as s:
        get_share(s, share).task_state = S.COPY_COMPLETED
    with session_scope(db_url) as s, pytest.raises(InvalidStateError, match="reset_task_state"):
        admit_complete(s, share, project_id=None)


# --- §12.4: the admin repairs ------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, S.ERROR, S.COPY_COMPLETED])
def test_reset_task_state(db_url: str, session: Session, value: str | None) -> None:
    share = new_share(db_url)
    with session_scope(db_url) as s:
        reset_task_state(s, share, value)
    assert share_row(db_url, share)[1] == value


@pytest.mark.parametrize("value", ["bogus", S.DRIVER_STARTING, S.CANCEL_IN_PROGRESS])
def test_invalid_resets_are_refused(db_url: str, session: Session, value: str) -> None:
    share = new_share(db_url)
    with session_scope(db_url) as s, pytest.raises(InvalidInputError, match="Invalid task_state"):
        reset_task_state(s, share, value)
    assert share_row(db_url, share)[1] is None


def test_a_repaired_share_can_migrate_again(db_url: str, session: Session) -> None:
    from storage.shares import reset_status

    share = new_share(db_url)
    put_in_state(db_url, share, S.COPY_IN_PROGRESS)
    with session_scope(db_url) as s:
        reset_status(s, share, "available")
        reset_task_state(s, share, None)
    assert share_row(db_url, share) == ("available", None, POOL_A)
    assert admit(db_url, share, start_request(host=POOL_A)) is None  # usable again: a no-op


# --- races: the database decides ---------------------------------------------------------------


def _race(*calls: Callable[[], Any]) -> list[Any]:
    """Run `calls` at the same instant on their own threads; each result or exception."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int, call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[i] = call()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def _forced_start(db_url: str, share_id: str, host: str) -> str:
    mig = admit(db_url, share_id, start_request(host=host, force_host_assisted_migration=True))
    assert mig is not None
    return mig.id


def test_two_starts_on_one_share_make_one_migration(db_url: str, session: Session) -> None:
    for _ in range(ROUNDS):
        share = new_share(db_url)
        results = _race(*[lambda s=share: _forced_start(db_url, s, POOL_B)] * 2)
        winners = [r for r in results if isinstance(r, str)]
        losers = [r for r in results if isinstance(r, InvalidStateError)]
        assert len(winners) == 1 and len(losers) == 1, results
        assert [m.id for m in migrations_of(db_url, share)] == winners


def test_concurrent_completes_one_wins(db_url: str, session: Session) -> None:
    share = new_share(db_url)
    put_in_state(db_url, share, S.COPY_COMPLETED)

    def complete() -> str:
        with session_scope(db_url) as s:
            return admit_complete(s, share, project_id=None).id

    results = _race(*[complete] * 8)
    assert sum(isinstance(r, str) for r in results) == 1, results
    assert sum(isinstance(r, InvalidStateError) for r in results) == 7, results
    assert share_row(db_url, share)[1] == S.COMPLETING


def test_complete_and_cancel_at_once_one_wins_consistently(db_url: str, session: Session) -> None:
    wins: dict[str, int] = {}
    for _ in range(ROUNDS):
        share = new_share(db_url)
        mig_id = _forced_start(db_url, share, POOL_B)
        with session_scope(db_url) as s:
            get_share(s, share).task_state = S.COPY_COMPLETED

        def complete(share: str = share) -> str:
            with session_scope(db_url) as s:
                admit_complete(s, share, project_id=None)
            return "complete"

        def cancel(share: str = share) -> str:
            with session_scope(db_url) as s:
                admit_cancel(s, share, project_id=None)
            return "cancel"

        results = _race(complete, cancel)
        won = [r for r in results if isinstance(r, str)]
        assert len(won) == 1, results
        assert sum(isinstance(r, InvalidStateError) for r in results) == 1, results
        (mig,) = migrations_of(db_url, share)
        assert mig.id == mig_id and mig.requested_action == won[0]
        # The winner's effect and only the winner's: complete moves to completing.
        expected = S.COMPLETING if won[0] == "complete" else S.COPY_COMPLETED
        assert share_row(db_url, share)[1] == expected
        wins[won[0]] = wins.get(won[0], 0) + 1
    assert sum(wins.values()) == ROUNDS


def test_complete_before_phase1_is_refused_and_records_nothing(
    db_url: str, session: Session
) -> None:
    share = new_share(db_url)
    _forced_start(db_url, share, POOL_B)
    with (
        session_scope(db_url) as s,
        pytest.raises(InvalidStateError, match=r"First migration phase of share .* not completed"),
    ):
        admit_complete(s, share, project_id=None)
    (mig,) = migrations_of(db_url, share)
    assert mig.requested_action is None


def test_two_migrations_cannot_overcommit_a_pool(db_url: str, session: Session) -> None:
    """Pool a has 10 GiB, two 6 GiB shares start for it at once: the reservation is taken
    with the admission, so one is admitted and the other refused with the free space named."""
    for _ in range(ROUNDS // 2):
        first, second = new_share(db_url, 6, POOL_B), new_share(db_url, 6, POOL_B)
        results = _race(*(lambda s=s: _forced_start(db_url, s, POOL_A) for s in (first, second)))
        admitted = [r for r in results if isinstance(r, str)]
        losers = [r for r in results if isinstance(r, InvalidInputError)]
        assert len(admitted) == 1 and len(losers) == 1, results
        assert "4 GiB free" in str(losers[0]) and POOL_A in str(losers[0])
        # The winner's destination fits: its reservation was its own.
        assert life.reserve_destination(admitted[0], db_url=db_url)
        endings.abort(admitted[0], S.CANCELLED, "test cleanup", db_url=db_url)
        with session_scope(db_url) as s:  # room on pool b for the next round
            for share in (first, second):
                delete_share(s, share)


# --- §8: migration_get_progress ------------------------------------------------------------------


def _progress(db_url: str, share_id: str) -> tuple[int, str | None, dict[str, object]]:
    with session_scope(db_url) as s:
        view = read_progress(s, share_id, project_id=None)
        return view.total_progress, view.task_state, view.details


def _counters(db_url: str, migration_id: str, **values: Any) -> None:
    with session_scope(db_url) as s:
        row = s.get(Migration, migration_id)
        assert row is not None
        for key, value in values.items():
            setattr(row, key, value)


def test_progress_is_a_high_water_mark_with_the_copy_details(db_url: str, session: Session) -> None:
    share = new_share(db_url)
    mig = put_in_state(db_url, share, S.COPY_IN_PROGRESS, bytes_planned=1 << 30, files_planned=10)
    readings = []
    for verified, files in ((0, 0), (1 << 29, 5), (1 << 28, 2), (1 << 30, 10)):
        _counters(db_url, mig, bytes_verified=verified, files_verified=files)
        readings.append(_progress(db_url, share)[0])
    # Half the bytes and files reads 50; the counters going back (a re-plan) does not; all
    # counted but phase 1 not done (the finish may still find open entries) reads 99.
    assert readings == [0, 50, 50, 99]
    _counters(db_url, mig, current_path="dir/file.bin")
    details = _progress(db_url, share)[2]
    assert details["current_file_path"] == "dir/file.bin"
    assert (details["files_total"], details["bytes_total"]) == (10, 1 << 30)
    with session_scope(db_url) as s:
        get_share(s, share).task_state = S.COPY_COMPLETED
    assert _progress(db_url, share)[0] == 100


def test_many_small_files_still_move_the_number(db_url: str, session: Session) -> None:
    share = new_share(db_url)
    mig = put_in_state(db_url, share, S.COPY_IN_PROGRESS, bytes_planned=0, files_planned=1000)
    _counters(db_url, mig, files_verified=250)
    assert _progress(db_url, share)[0] == 25


def test_an_error_reports_where_it_stopped_and_why(db_url: str, session: Session) -> None:
    share = new_share(db_url)
    mig = put_in_state(db_url, share, S.COPY_IN_PROGRESS, bytes_planned=100, files_planned=0)
    _counters(db_url, mig, bytes_verified=40)
    assert _progress(db_url, share)[0] == 40
    _counters(db_url, mig, error="destination pool full")
    with session_scope(db_url) as s:
        get_share(s, share).task_state = S.ERROR
    assert _progress(db_url, share) == (40, S.ERROR, {"error": "destination pool full"})
