"""Requests that race: the database decides, every time, and the loser gets the contract's
error. Run on SQLite and (with $SHAREMIG_TEST_PG_URL) PostgreSQL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import POOL_A, POOL_B, POOL_TINY, record
from reliability_kit import new_share, start

ROUNDS = 8


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


def _migrations_of(share_id: str) -> list[Any]:
    from sqlalchemy import select

    from storage.db import session_scope
    from storage.models import Migration

    with session_scope() as s:
        return list(s.scalars(select(Migration).where(Migration.share_id == share_id)))


def test_two_starts_on_one_share_make_one_migration(pools: dict[str, Path]) -> None:
    from storage.errors import InvalidStateError

    for _ in range(ROUNDS):
        share_id, _path = new_share(POOL_A)
        results = _race(*[lambda s=share_id: start(s, POOL_B)] * 2)
        winners = [r for r in results if isinstance(r, str)]
        losers = [r for r in results if isinstance(r, InvalidStateError)]
        record("race: two migration_start at once", f"{len(winners)} started", 0)
        assert len(winners) == 1 and len(losers) == 1, results
        assert [m.id for m in _migrations_of(share_id)] == winners


def _phase1_done(share_id: str) -> str:
    from storage.db import session_scope
    from storage.shares import get_share

    mig = start(share_id, POOL_B)
    with session_scope() as s:
        get_share(s, share_id).task_state = "data_copying_completed"
    return mig


def test_complete_and_cancel_at_once_one_wins_consistently(pools: dict[str, Path]) -> None:
    from storage.db import session_scope
    from storage.errors import InvalidStateError
    from storage.migration_admission import admit_cancel, admit_complete
    from storage.shares import get_share

    wins: dict[str, int] = {}
    for _ in range(ROUNDS):
        share_id, _path = new_share(POOL_A)
        mig_id = _phase1_done(share_id)

        def complete(share_id: str = share_id) -> str:
            with session_scope() as s:
                admit_complete(s, share_id, project_id=None)
            return "complete"

        def cancel(share_id: str = share_id) -> str:
            with session_scope() as s:
                admit_cancel(s, share_id, project_id=None)
            return "cancel"

        results = _race(complete, cancel)
        won = [r for r in results if isinstance(r, str)]
        assert len(won) == 1, results
        assert sum(isinstance(r, InvalidStateError) for r in results) == 1, results
        (mig,) = _migrations_of(share_id)
        assert mig.id == mig_id and mig.requested_action == won[0]
        with session_scope() as s:
            state = get_share(s, share_id).task_state
        # The winner's effect and only the winner's: complete moves to completing.
        assert state == (
            "migration_completing" if won[0] == "complete" else "data_copying_completed"
        )
        wins[won[0]] = wins.get(won[0], 0) + 1
        record("race: complete and cancel at once", f"{won[0]} won", 0)
    assert sum(wins.values()) == ROUNDS


def test_complete_before_phase1_is_refused_with_the_contract_error(
    pools: dict[str, Path],
) -> None:
    from storage.db import session_scope
    from storage.errors import InvalidStateError
    from storage.migration_admission import admit_complete

    share_id, _path = new_share(POOL_A)
    start(share_id, POOL_B)
    with (
        pytest.raises(InvalidStateError, match=r"First migration phase of share .* not completed"),
        session_scope() as s,
    ):
        admit_complete(s, share_id, project_id=None)
    (mig,) = _migrations_of(share_id)
    assert mig.requested_action is None
    record("race: complete before phase 1 done", "refused (400)", 0)


def test_two_migrations_cannot_overcommit_a_pool(pools: dict[str, Path]) -> None:
    """A 3 GiB pool, two 2 GiB shares started at once: the reservation is taken with the 202,
    so one start is admitted and the other refused at once (400) with the free space named."""
    from storage import migration_endings as endings
    from storage import migration_lifecycle as life
    from storage.errors import InvalidInputError

    for _ in range(ROUNDS // 2):
        first, _ = new_share(POOL_A, size=2)
        second, _ = new_share(POOL_A, size=2)
        results = _race(*(lambda s=s: start(s, POOL_TINY) for s in (first, second)))
        admitted = [r for r in results if isinstance(r, str)]
        refused = [r for r in results if isinstance(r, InvalidInputError)]
        record("race: two starts on a pool with room for one", f"{len(admitted)} admitted", 0)
        assert len(admitted) == 1 and len(refused) == 1, results
        assert "free" in str(refused[0]) and POOL_TINY in str(refused[0])
        # The winner's destination fits: its reservation was its own.
        assert life.reserve_destination(admitted[0])
        endings.abort(admitted[0], "migration_cancelled", "test cleanup")
