"""A pool's bandwidth budget is shared: copiers in separate processes together get the
pool's rate, not each of them (the token bucket lives in the database)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from storage.mover import run_copy
from storage.mover.pool_budget import BudgetSpec

RATE = 1_000_000
"""Low enough to stay stable on a loaded 2-CPU machine: the copiers mostly sleep."""

_TAKER = """
import sys, time
from storage.mover.pool_budget import BudgetSpec, PoolBudget
budget = PoolBudget((BudgetSpec("h1@lfs#a", int(sys.argv[2])),), sys.argv[1])
print(time.time())
for _ in range(int(sys.argv[3])):
    budget.consume(65536)
budget.consume(budget.grant)  # flush what is still pending
print(time.time())
"""


def test_two_processes_share_one_pool_budget(db_url: str) -> None:
    chunks = 46  # ~3 MB per process, 6 MB together: ~5 s at the pool's rate after the burst
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _TAKER, db_url, str(RATE), str(chunks)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    # Timed from the first taker's start to the last one's end (interpreter start-up on a
    # loaded machine is not the budget's business).
    times = [[float(t) for t in p.communicate(timeout=120)[0].split()] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    elapsed = max(t[1] for t in times) - min(t[0] for t in times)
    taken = 2 * chunks * 65536
    # The bucket starts full (one second of burst); the rest goes at the pool's rate.
    rate = (taken - RATE) / elapsed
    assert rate <= RATE * 1.15, f"{rate:.0f} B/s through a {RATE} B/s budget"
    # The budget is a ceiling; the floor only shows it is handed out, and is loose because
    # on a loaded machine the takers themselves fall behind (0.849 x measured at load 30).
    assert rate >= RATE * 0.7, f"only {rate:.0f} B/s: the budget is not handed out"


def test_a_copy_takes_from_every_pool_it_touches(tmp_path: Path, db_url: str) -> None:
    from sqlalchemy import select

    from storage.db import session_scope
    from storage.models import PoolBandwidth

    src = tmp_path / "src"
    src.mkdir()
    for i in range(8):
        (src / f"f{i}").write_bytes(bytes([i]) * 262144)
    budget = (BudgetSpec("h1@lfs#a", 4_000_000), BudgetSpec("h1@lfs#b", 5_000_000))
    summary = run_copy(str(src), str(tmp_path / "dst"), db_url=db_url, budget=budget)
    assert summary.complete
    with session_scope(db_url) as s:
        rows = {r.pool_name for r in s.scalars(select(PoolBandwidth))}
    assert rows == {"h1@lfs#a", "h1@lfs#b"}  # both buckets paid for the bytes copied


def test_a_budget_needs_a_positive_rate() -> None:
    from storage.mover.pool_budget import PoolBudget

    with pytest.raises(ValueError, match="positive rate"):
        PoolBudget((BudgetSpec("p", 0),))
