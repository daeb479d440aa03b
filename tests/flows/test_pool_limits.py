"""Per-pool limits through a real Prefect server and worker: `max_concurrent_migrations`
queues starts (Prefect global concurrency limits), and one bandwidth budget per pool is
shared by every migration writing to it (the database's token bucket)."""

from __future__ import annotations

import contextlib
import os
import time
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from tests.kit.flow_runs import start_request
from tests.kit.prefect_service import POOL_A
from tests.kit.shares import db_share, migration_of, new_share, share_row
from tests.kit.waiting import wait_for, wait_task_state

pytestmark = pytest.mark.usefixtures("service_env")


def _add_pool(home: Path, suffix: str, **limits: int) -> str:
    """A localfs pool with `limits` in the worker's database (beside the session's pools)."""
    from storage.db import session_scope
    from storage.models import Pool

    name = f"sharemig@localfs#{suffix}"
    root = home / "pools" / suffix
    root.mkdir(parents=True, exist_ok=True)
    with session_scope() as s:
        pool = s.get(Pool, name) or Pool(name=name)
        pool.host, pool.backend, pool.pool = "sharemig", "localfs", suffix
        pool.driver, pool.url, pool.capacity_gb = "localfs", root.as_uri(), 100
        pool.availability_zone, pool.enabled, pool.options = "nova", True, {}
        pool.max_concurrent_migrations = limits.get("max_concurrent_migrations")
        pool.bandwidth_limit_bytes = limits.get("bandwidth_limit_bytes")
        s.add(pool)
    return name


def _share_with_files(count: int, size: int) -> Any:
    share = new_share(POOL_A)
    for i in range(count):
        (share.path / f"f{i:03d}").write_bytes(bytes([i % 251]) * size)
    return share


def _task_runs(flow_run_id: str, name: str) -> list[Any]:
    """The flow run's task runs of the task `name` (Prefect names each run `name-<suffix>`)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)])),
            limit=200,
        )
    return [t for t in runs if t.name == name or t.name.startswith(f"{name}-")]


def _window(flow_run_id: str, first: str, last: str) -> tuple[datetime, datetime]:
    """From the start of the first `first` task run to the end of the last `last` one."""
    starts = [t.start_time for t in _task_runs(flow_run_id, first) if t.start_time]
    ends = [t.end_time for t in _task_runs(flow_run_id, last) if t.end_time]
    assert starts and ends, f"run {flow_run_id} recorded no {first}/{last} task runs"
    return min(starts), max(ends)


def _cancel_all(share_ids: list[str]) -> None:
    from flows import control

    for sid in share_ids:
        control.cancel_migration(sid, reason="test done")
    for sid in share_ids:
        wait_task_state(db_share(sid), "migration_cancelled")


def test_one_migration_at_a_time_on_a_pool_limited_to_one(service_env: Path) -> None:
    from flows import control

    pool = _add_pool(service_env, "limited-one", max_concurrent_migrations=1)
    shares = [_share_with_files(24, 128 << 10) for _ in range(3)]
    for share in shares:
        control.start_migration(
            share.share_id, start_request(pool, force_host_assisted_migration=True)
        )

    def queued_seen() -> bool:
        states = [share_row(s.share_id)["task_state"] for s in shares]
        moving = [t for t in states if t not in ("migration_starting", "data_copying_completed")]
        assert len(moving) <= 1, f"more than one migration moving data on {pool}: {states}"
        if "migration_starting" not in states or not moving:
            return False
        waiting = next(s for s, t in zip(shares, states, strict=True) if t == "migration_starting")
        details = control.migration_progress(waiting.share_id).details
        return "sharemig_queued" in details

    wait_for(queued_seen, timeout=180, interval=0.2, what="a start queued behind the pool's limit")
    for share in shares:
        wait_task_state(db_share(share.share_id), "data_copying_completed", timeout=300)

    # The runs' recorded task times: each held the pool's one slot from `advance-start` to
    # its last `finish-copy`, and no two of those intervals overlap.
    windows = sorted(
        _window(migration_of(s.share_id).flow_run_id, "advance-start", "finish-copy")
        for s in shares
    )
    for (_, end), (start, _) in pairwise(windows):
        assert end <= start, f"slots overlapped: {windows}"
    _cancel_all([s.share_id for s in shares])


GAP_S = 2.0
"""Nothing landed on the pool for this long: no copy was running (the worker may start the
second run late, even after the first ended, on a loaded machine), which is not pacing. At
the budget's rate a 16 KiB file lands every ~33 ms."""
BUDGET = 500_000
"""Bytes/s of the pool: low, so two copies are paced well below the machine's speed, and each
copy alone lasts long enough (16 s) that both run together even when the worker starts the
second run seconds after the first (8 s measured on a loaded machine)."""


def _bytes_on(root: Path) -> int:
    """Bytes of the files under `root` (the destination pool), as the filesystem has them."""
    total = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


@pytest.mark.slow
def test_two_migrations_share_the_pool_bandwidth_budget(service_env: Path) -> None:
    from flows import control
    from storage.mover.pool_budget import BURST_S

    pool = _add_pool(service_env, "budgeted", bandwidth_limit_bytes=BUDGET)
    root = service_env / "pools" / "budgeted"
    before = _bytes_on(root)
    # 8 MiB each in 512 files of 16 KiB.
    shares = [_share_with_files(512, 16 << 10) for _ in range(2)]
    total = 2 * 512 * (16 << 10)
    for share in shares:
        control.start_migration(
            share.share_id, start_request(pool, force_host_assisted_migration=True)
        )
    # The bytes written into the pool over wall time, read from the destination pool itself
    # (not from the migrations' counters, which move a batch at a time): what the budget
    # governs, at the grain of one file.
    samples: list[tuple[float, int]] = []

    def sample() -> bool:
        samples.append((time.monotonic(), _bytes_on(root) - before))
        return samples[-1][1] >= total

    wait_for(sample, timeout=300, interval=0.1, what="both copies to land on the pool")
    moves = [m for i, m in enumerate(samples) if m[1] and (i == 0 or samples[i - 1][1] != m[1])]
    gaps = [t1 - t0 for (t0, _), (t1, _) in pairwise(moves)]
    # The time the pool was being written to (from the first file landed to the last), less
    # the idle stretches. The bucket starts full and refills its one-second burst in every
    # idle stretch: each lets one burst through at once, which the budget allows; the rate
    # is what the copies got beyond those bursts.
    idles = sum(1 for dt in gaps if dt > GAP_S)
    seconds = sum(dt for dt in gaps if dt <= GAP_S)
    copied = moves[-1][1] - (1 + idles) * BUDGET * BURST_S
    assert seconds >= 8, f"too short a window to measure: {moves}"
    rate = copied / seconds
    assert BUDGET * 0.85 <= rate <= BUDGET * 1.15, (
        f"{rate:.0f} B/s through {BUDGET} B/s ({copied} B in {seconds:.1f} s, {idles} idle)"
    )
    for share in shares:
        wait_task_state(db_share(share.share_id), "data_copying_completed", timeout=300)
    _cancel_all([s.share_id for s in shares])
