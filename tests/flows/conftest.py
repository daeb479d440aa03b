"""Helpers for flow tests: shares with real data in the worker's data dir, state polling."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prefect_service import wait_for

BENCH_KIT = Path(
    os.environ.get("SHAREMIG_BENCH_KIT", Path(__file__).resolve().parents[3] / "shared" / "bench")
)
POOL_A = "sharemig@localfs#pool-a"
POOL_B = "sharemig@localfs#pool-b"
POOL_OBJECTS = "sharemig@objects#bucket"
POOL_BROKEN = "sharemig@localfs#broken"


def gen_tree(target: Path, preset: str = "small") -> None:
    script = BENCH_KIT / "gen_dataset.py"
    if not script.is_file():
        pytest.skip(f"{script} not found (set SHAREMIG_BENCH_KIT to the bench kit directory)")
    subprocess.run(
        [sys.executable, str(script), str(target), "--preset", preset],
        check=True,
        capture_output=True,
    )


def treecmp(a: Path, b: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH_KIT / "treecmp.py"), str(a), str(b)],
        capture_output=True,
        text=True,
    )


@dataclass
class ShareOnPool:
    share_id: str
    pool: str
    path: Path


def new_share(pool: str, *, size: int = 1, snapshots: bool = True) -> ShareOnPool:
    """A share with an empty instance on `pool`; `snapshots=False` uses a type without them."""
    from storage.catalog import create_share_type, get_share_type
    from storage.db import session_scope
    from storage.errors import NotFoundError
    from storage.pools import driver_for
    from storage.shares import active_instance, create_share

    with session_scope() as s:
        type_id = None
        if not snapshots:
            try:
                type_id = get_share_type(s, "no-snapshots").id
            except NotFoundError:
                type_id = create_share_type(
                    s, "no-snapshots", {"driver_handles_share_servers": "False"}
                ).id
        share = create_share(
            s, project_id="flows-tests", size=size, host=pool, name="t", share_type_id=type_id
        )
        inst = active_instance(s, share)
        path = Path(driver_for(s, pool).instance_url(inst.location))
        return ShareOnPool(share.id, pool, path)


def share_row(share_id: str) -> dict[str, Any]:
    from storage.db import session_scope
    from storage.shares import get_share, instances

    with session_scope() as s:
        share = get_share(s, share_id)
        return {
            "status": share.status,
            "task_state": share.task_state,
            "host": share.host,
            "instances": [
                (i.id, i.pool_name, i.status, i.location) for i in instances(s, share_id)
            ],
        }


ENDS = ("migration_success", "migration_error", "migration_cancelled")


def wait_task_state(share_id: str, *states: str, timeout: float = 120) -> dict[str, Any]:
    """Until the share is in one of `states`; fails at once if the migration ended otherwise."""

    def reached() -> dict[str, Any] | None:
        row = share_row(share_id)
        if row["task_state"] in ENDS and row["task_state"] not in states:
            mig = migration_of(share_id)
            raise AssertionError(f"migration ended in {row['task_state']}: {mig.error}")
        return row if row["task_state"] in states else None

    return wait_for(reached, timeout=timeout, interval=0.2, what=f"{share_id} in {states}")


def migration_of(share_id: str) -> Any:
    from sqlalchemy import select

    from storage.db import session_scope
    from storage.models import Migration

    with session_scope() as s:
        return s.scalars(
            select(Migration)
            .where(Migration.share_id == share_id)
            .order_by(Migration.created_at.desc())
        ).first()


def run_state(run_id: str) -> Any:
    from uuid import UUID

    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(run_id)).state


def processes_for_run(run_id: str) -> list[int]:
    """Pids of live processes executing flow run `run_id` (the worker sets it in their env)."""
    marker = f"PREFECT__FLOW_RUN_ID={run_id}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in env.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def start_request(host: str, **flags: bool) -> Any:
    from flows.control import StartRequest

    base = dict(
        preserve_metadata=False, preserve_snapshots=False, writable=False, nondisruptive=False
    )
    base.update(flags)
    return StartRequest(host=host, **base)


@pytest.fixture
def small_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `small` tree, generated once per test that needs the expected result."""
    ref = tmp_path_factory.mktemp("reference") / "small"
    gen_tree(ref)
    return ref
