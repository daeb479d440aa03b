"""The kill matrix's steps: shares with trees on the kill stack, migrations started and
followed through its API and database, kills, recovery, and the checks every scenario ends with.
"""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.kit.bench_kit import treecmp
from tests.kit.flow_runs import run_state, start_request
from tests.kit.kill_stack import POOL_A, POOL_B, PROJECT, Stack, kill9, processes_with_env
from tests.kit.manila_api import start_body
from tests.kit.reliability import bytes_lost, record
from tests.kit.shares import local_path
from tests.kit.waiting import later_than, wait_for, wait_task_state

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

    req = start_request(POOL_B, force_host_assisted_migration=True)
    started = control.start_migration(share_id, req)
    assert started.flow_run_id
    return started.flow_run_id


START_BODY = start_body(host=POOL_B, force_host_assisted_migration=True)


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


def wait_state(share_id: str, *states: str, timeout: float = PHASE1) -> dict[str, Any]:
    """Until the share's row is in one of `states`; fails once it went past them all."""
    return wait_task_state(
        lambda: row(share_id), *states, fail_on=later_than(*states), timeout=timeout, interval=0.05
    )


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
