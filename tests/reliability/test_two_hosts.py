"""Two "hosts" on one PostgreSQL and one Prefect server: an evacuation spreads over both
workers, one host dies (kill -9 of its worker and its flow runs), and recovery passes run on
the other, two at once, as two `up`s sharing the database would.

Each host is a `prefect worker` with its own SHAREMIG_HOME and working directory; they share
only the database URL, the Prefect API and the pool paths (one machine stands in for two, so
the pools are plain directories both see; pool B is a tmpfs, so the localfs driver copies
instead of renaming). Every migration must end in `migration_success` with its data intact;
no migration gets a second run while its first is alive, and no run that was alive is marked
crashed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kit.kill_stack import (
    POOL_A,
    POOL_B,
    PREFECT,
    Stack,
    descendants,
    fresh_prefect_pg,
    kill9,
    prepared_stack,
)
from tests.kit.mounts import tmpfs
from tests.kit.postgres import PG_URL_ENV, fresh_pg_database
from tests.kit.reliability import content, make_tree, new_share
from tests.kit.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.scale, pytest.mark.timeout(1800)]

WORK_POOL = "sharemig-two-hosts"
SHARES = 6
# Paced so the kill lands mid-copy: 40 files of 96 KiB per share at 256 KiB/s per copy.
HOST_ENV = {
    "SHAREMIG_BANDWIDTH_LIMIT_BYTES": str(256 * 1024),
    "SHAREMIG_BATCH_MAX_FILES": "8",
    "SHAREMIG_COPY_WORKERS": "2",
}
# Each worker takes at most this many flow runs at once: 6 migrations and the evacuation
# cannot all land on one host.
WORKER_LIMIT = 4
# Pool B is another filesystem: the localfs driver copies (driver-assisted), or the mover does.
COPYING = ("migration_driver_in_progress", "data_copying_in_progress")

RECOVERY_PASS = """
import json
from flows.recovery import recover_migrations
print(json.dumps([[r.migration_id, r.action, r.new_flow_run_id] for r in recover_migrations()]))
"""


@pytest.fixture
def two_hosts(tmp_path: Path) -> Iterator[Stack]:
    """One Prefect server and one PostgreSQL database for sharemig; hosts start in the test."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.deploy import apply_deployments

    if not os.environ.get(PG_URL_ENV):
        pytest.skip(f"{PG_URL_ENV} is not set (.ci/postgres starts a server)")
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs for pool B (a second filesystem)")
    with (
        fresh_pg_database() as pg_url,
        fresh_prefect_pg() as prefect_pg,
        prepared_stack(Stack(tmp_path, pg_url, prefect_pg)) as stack,
        tmpfs(stack.pool_dir(POOL_B), "512m"),
    ):
        stack.start_server()
        with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
            apply_deployments(work_pool=WORK_POOL)
            yield stack


def _host_home(stack: Stack, name: str) -> Path:
    home = stack.root / f"host-{name}"
    if not home.exists():
        home.mkdir()
        (home / "pools.yaml").write_text((stack.home / "pools.yaml").read_text())
    return home


def _start_host(stack: Stack, name: str) -> subprocess.Popen[bytes]:
    from prefect import get_client

    home = _host_home(stack, name)
    env = stack.env(SHAREMIG_HOME=str(home), **HOST_ENV)

    def online() -> bool:
        with get_client(sync_client=True) as client:
            workers = client.read_workers_for_work_pool(WORK_POOL)
        return any(w.name == f"host-{name}" and w.status.value == "ONLINE" for w in workers)

    argv = [PREFECT, "worker", "start", "--pool", WORK_POOL, "--type", "process"]
    argv += ["--name", f"host-{name}", "--limit", str(WORKER_LIMIT)]
    return stack._spawn(f"worker-{name}", argv, env, online, timeout=120, cwd=home)


def _runs_by_host(stack: Stack) -> dict[str, str]:
    """flow run id -> host, for every live flow-run process (from its environment)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = dict(
                kv.split(b"=", 1) for kv in (entry / "environ").read_bytes().split(b"\0") if kv
            )
        except (OSError, ValueError):
            continue
        run = env.get(b"PREFECT__FLOW_RUN_ID")
        home = env.get(b"SHAREMIG_HOME", b"").decode()
        if run and home.startswith(str(stack.root / "host-")):
            found[run.decode()] = Path(home).name
    return found


def _task_states(share_ids: list[str]) -> dict[str, str | None]:
    from storage.db import session_scope
    from storage.shares import get_share

    with session_scope() as s:
        return {sid: get_share(s, sid).task_state for sid in share_ids}


def _recovery_passes(stack: Stack, homes: list[Path]) -> list[list[Any]]:
    """One recovery pass per home, all at once (two `up`s on one database)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RECOVERY_PASS],
            env=stack.env(SHAREMIG_HOME=str(home)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for home in homes
    ]
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr.decode()[-2000:]
        out += json.loads(stdout.decode().strip().splitlines()[-1])
    return out


def _migrate_runs(stack: Stack) -> list[Any]:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(limit=200)
    # Runs of the migrate-share deployment (its switchover subflow runs have no deployment).
    return [r for r in runs if r.deployment_id and "migration_id" in (r.parameters or {})]


def test_evacuation_over_two_hosts_survives_one_host_dying(two_hosts: Stack) -> None:

    stack = two_hosts
    shares = []
    for _ in range(SHARES):
        share_id, path = new_share(POOL_A)
        shares.append((share_id, make_tree(path)))
    ids = [sid for sid, _ in shares]
    host_a, host_b = _start_host(stack, "a"), _start_host(stack, "b")
    try:
        _evacuate_and_kill(stack, shares, ids, host_a, host_b)
    finally:
        for host in (host_a, host_b):
            kill9(descendants(host.pid))
            host.wait(timeout=10)


def _evacuate_and_kill(
    stack: Stack,
    shares: list[tuple[str, Any]],
    ids: list[str],
    host_a: subprocess.Popen[bytes],
    host_b: subprocess.Popen[bytes],
) -> None:
    from prefect.deployments import run_deployment

    from storage import maintenance_batch
    from storage.db import session_scope
    from storage.shares import get_share

    parent: Any = run_deployment(
        "evacuate-pool/evacuate-pool",
        parameters={
            "pool": POOL_A,
            "destination": POOL_B,
            "auto_approve": True,
            "max_concurrent": SHARES,
        },
        timeout=0,
    )
    seen: dict[str, str] = {}

    def both_hosts_copying() -> bool:
        seen.update(_runs_by_host(stack))
        copying = [s for s in _task_states(ids).values() if s in COPYING]
        hosts = {seen[r] for r in _runs_by_host(stack)}
        return len(copying) >= 2 and hosts == {"host-a", "host-b"}

    wait_for(both_hosts_copying, timeout=300, interval=0.2, what="copies on both hosts")
    seen.update(_runs_by_host(stack))
    on_a = {run for run, host in _runs_by_host(stack).items() if host == "host-a"}
    kill9(descendants(host_a.pid) + [int(p) for p in _pids_of(on_a)])
    host_a.wait(timeout=10)
    killed_at = _task_states(ids)
    print("runs per host before the kill:", Counter(seen.values()), "killed:", sorted(on_a))
    print("task states at the kill:", killed_at)

    homes = [_host_home(stack, "b"), _host_home(stack, "a")]  # host a's `up` restarted too
    actions: list[list[Any]] = []

    def all_succeeded() -> bool:
        states = _task_states(ids)
        bad = {
            s: st for s, st in states.items() if st in ("migration_error", "migration_cancelled")
        }
        assert not bad, f"migrations ended badly: {bad}"
        if all(st == "migration_success" for st in states.values()):
            return True
        actions.extend(_recovery_passes(stack, homes))
        return False

    wait_for(all_succeeded, timeout=600, interval=1, what="every migration to succeed")
    assert host_b.poll() is None

    resumed = Counter(mid for mid, action, _ in actions if action == "resume")
    assert all(n == 1 for n in resumed.values()), f"resumed more than once: {actions}"
    with session_scope() as s:
        for share_id in ids:
            share = get_share(s, share_id)
            assert share.host == POOL_B and share.status == "available"
    for share_id, expected in shares:
        dest = [p for p in stack.pool_dir(POOL_B).iterdir() if p.is_dir() and content(p)]
        assert any(content(p) == expected for p in dest), f"{share_id}: data differs"
    assert not [p for p in stack.pool_dir(POOL_A).iterdir() if content(p)], "sources left"

    def runs_ended() -> list[Any]:
        # A run records migration_success, then returns (and wakes the evacuation).
        found = _migrate_runs(stack)
        return found if all(r.state and r.state.is_final() for r in found) else []

    runs = wait_for(runs_ended, timeout=300, interval=1, what="every migration run to end")
    per_migration: dict[str, list[Any]] = {}
    for run in runs:
        per_migration.setdefault(run.parameters["migration_id"], []).append(run)
    hosts_used = {seen[str(r.id)] for r in runs if str(r.id) in seen}
    assert hosts_used == {"host-a", "host-b"}, f"migrations ran on {hosts_used} only"
    for mid, its_runs in per_migration.items():
        crashed = {str(r.id) for r in its_runs if r.state and r.state.is_crashed()}
        assert crashed <= on_a, f"{mid}: a run that was alive was marked crashed: {crashed}"
        completed = [r for r in its_runs if r.state and r.state.is_completed()]
        assert len(completed) == 1, f"{mid}: {[(str(r.id), r.state) for r in its_runs]}"
    assert resumed.keys() <= {mid for mid, rs in per_migration.items() if len(rs) > 1}

    def parent_done() -> bool:
        from prefect import get_client

        with get_client(sync_client=True) as client:
            state = client.read_flow_run(parent.id).state
        if state is not None and state.is_paused():
            _recovery_passes(stack, homes[:1])  # its wake was lost with host a
        return bool(state and state.is_completed())

    wait_for(parent_done, timeout=300, interval=1, what="the evacuation to complete")
    report = {m.share_id: m.outcome for m in maintenance_batch.moves(str(parent.id))}
    assert report == {sid: "migration_success" for sid in ids}
    print("per host:", Counter(seen[str(r.id)] for r in runs if str(r.id) in seen))
    print("recovery actions:", [a for a in actions if a[1] != "leave"])


def _pids_of(run_ids: set[str]) -> list[int]:
    from cli.supervisor import pids_with_env

    return [pid for run in run_ids for pid in pids_with_env("PREFECT__FLOW_RUN_ID", run)]
