"""Done-when of the Dask executor, as an operator runs it: `sharemig up --dask-address` on a
real `dask scheduler` with three `dask worker` processes (each its own environment and
SHAREMIG_HOME; they share only the database URL and the pool paths). One migration of the
bench kit's `standard` tree runs batches on all three (the scheduler's task stream says so);
one worker is killed with SIGKILL mid-copy; the migration still ends in `migration_success`,
treecmp-identical, and no file the manifest held as verified at the kill was written again.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from storage.db import session_scope
from storage.models import Migration
from storage.models.manifest import CopyJob, ManifestEntry
from storage.mover.plan import DONE
from tests.kit import up_process
from tests.kit.bench_kit import gen_tree, treecmp
from tests.kit.dask_cluster import DaskCluster, batches_by_worker, dask_cluster
from tests.kit.up_process import UpProcess, run_up

pytestmark = [pytest.mark.slow, pytest.mark.scale, pytest.mark.timeout(3600)]

COPY_S = 1800.0


@pytest.fixture
def stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[UpProcess, DaskCluster]]:
    # Three Dask processes beside `up`'s server, worker and shim on two cores: give `up` time.
    monkeypatch.setattr(up_process, "UP_START_S", 900.0)
    home = tmp_path / "home"
    db_url = f"sqlite:///{home / 'sharemig.db'}"
    with dask_cluster(tmp_path / "dask", db_url) as cluster:
        for name in ("w1", "w2", "w3"):
            cluster.start_worker(name)
        cluster.wait_for_workers(3)
        env = {"SHAREMIG_BATCH_MAX_FILES": "500", "SHAREMIG_WALK_LIMIT_ENTRIES": "1000000"}
        with run_up(home, extra_env=env, extra_args=("--dask-address", cluster.address)) as up:
            yield up, cluster


def _client(up: UpProcess) -> httpx.Client:
    return httpx.Client(
        base_url=f"{up.endpoints['api_url']}/v2/{up.endpoints['project_id']}",
        headers={
            "X-Auth-Token": up.endpoints["admin_token"],
            "X-OpenStack-Manila-API-Version": "2.99",
        },
        timeout=30,
    )


def _share(up: UpProcess, share_id: str) -> dict[str, Any]:
    with _client(up) as c:
        return dict(c.get(f"/shares/{share_id}").json()["share"])


def _wait_share(up: UpProcess, share_id: str, state: str) -> dict[str, Any]:
    deadline = time.monotonic() + COPY_S
    while (share := _share(up, share_id))["task_state"] != state:
        assert share["task_state"] != "migration_error", share
        assert time.monotonic() < deadline, f"{share_id} stuck in {share['task_state']}"
        time.sleep(1)
    return share


def _verified_files(db_url: str, share_id: str) -> tuple[Path, dict[bytes, tuple[int, int]]]:
    """The destination root and, per file the manifest holds as verified, its inode and
    ctime there now (a file written again gets a new inode or ctime)."""
    with session_scope(db_url) as s:
        job_id = s.scalar(select(Migration.copy_job_id).where(Migration.share_id == share_id))
        dest_url = s.scalar(select(CopyJob.dest_url).where(CopyJob.id == job_id))
        paths = s.scalars(
            select(ManifestEntry.path).where(
                ManifestEntry.job_id == job_id,
                ManifestEntry.state == DONE,
                ManifestEntry.kind == "file",
                ManifestEntry.hardlink_group.is_(None),  # finish_copy links these later
            )
        ).all()
    root = Path(str(dest_url).removeprefix("file://"))
    seen = {}
    for rel in paths:
        st = os.lstat(os.path.join(os.fsencode(root), rel))
        seen[rel] = (st.st_ino, st.st_ctime_ns)
    return root, seen


def test_a_migration_runs_on_three_dask_workers_and_survives_losing_one(
    stack: tuple[UpProcess, DaskCluster],
) -> None:
    up, cluster = stack
    assert "copy batches run on the Dask scheduler" in up.log()
    with _client(up) as admin:
        share = admin.post("/shares", json={"share": {"share_proto": "NFS", "size": 10}})
        share_id, source = share.json()["share"]["id"], share.json()["share"]["host"]
        export = admin.get(f"/shares/{share_id}/export_locations").json()["export_locations"]
        pools = [p["name"] for p in admin.get("/scheduler-stats/pools").json()["pools"]]
    src_root = Path(export[0]["path"].split(":", 1)[1])
    gen_tree(src_root, "standard")
    dest = next(p for p in pools if p != source and "localfs" in p)
    db_url = f"sqlite:///{up.home / 'sharemig.db'}"

    with cluster.client() as client:
        client.get_task_stream()  # installs the scheduler's task-stream plugin
        since = time.time()
        started = up.sharemig("migrate", share_id, dest, "--force-host-assisted", "--json")
        assert started.returncode == 0, started.stdout + started.stderr
        names = {addr: name for name, addr in cluster.addresses(client).items()}

        # Kill -9 a worker that has finished a batch and is running another, once every
        # worker has finished one.
        deadline = time.monotonic() + COPY_S
        victim = None
        while victim is None:
            per_worker = batches_by_worker(client, since, names)
            busy = [
                names[addr]
                for addr, keys in client.processing().items()
                if any(str(k).startswith("sharemig-batch") for k in keys)
            ]
            if len(per_worker) == 3 and busy:
                victim = busy[0]
                break
            assert _share(up, share_id)["task_state"] != "data_copying_completed", (
                f"the copy ended before every worker ran a batch: {per_worker}"
            )
            assert time.monotonic() < deadline, f"batches so far: {per_worker}"
            time.sleep(0.2)
        cluster.kill9(victim)
        dest_root, verified_at_kill = _verified_files(db_url, share_id)
        assert verified_at_kill, "nothing verified yet when the worker was killed"

        _wait_share(up, share_id, "data_copying_completed")
        per_worker = batches_by_worker(client, since, names)
    print(f"batches per Dask worker (scheduler's task stream): {per_worker}; killed {victim}")
    assert set(per_worker) == {"w1", "w2", "w3"}
    compared = treecmp(src_root, dest_root)
    assert compared.returncode == 0, compared.stdout + compared.stderr

    approve = up.sharemig("approve", share_id)
    assert approve.returncode == 0, approve.stdout + approve.stderr
    done = _wait_share(up, share_id, "migration_success")
    assert done["status"] == "available" and done["host"] == dest
    with _client(up) as admin:
        export = admin.get(f"/shares/{share_id}/export_locations").json()["export_locations"]
    assert Path(export[0]["path"].split(":", 1)[1]) == dest_root

    # Verified before the kill, never written again: same inode, same ctime.
    rewritten = [
        rel
        for rel, (ino, ctime) in verified_at_kill.items()
        if (st := os.lstat(os.path.join(os.fsencode(dest_root), rel)))
        and (st.st_ino, st.st_ctime_ns) != (ino, ctime)
    ]
    assert rewritten == [], f"{len(rewritten)} verified files were copied again: {rewritten[:5]}"
    print(json.dumps({"verified_at_kill": len(verified_at_kill), "rewritten": 0}))
