"""Maintenance flows as deployment runs on the real worker; Prefect-side cancel of a migration."""

from __future__ import annotations

from typing import Any

import pytest

from tests.kit.flow_runs import processes_for_run, run_state, start_request
from tests.kit.prefect_service import POOL_A, POOL_B, POOL_OBJECTS
from tests.kit.shares import db_share, migration_of, new_share, share_row, write_paced_tree
from tests.kit.waiting import wait_for, wait_task_state

pytestmark = pytest.mark.usefixtures("service_env")


def test_evacuate_pool_moves_every_share() -> None:
    from prefect.deployments import run_deployment

    shares = [new_share(POOL_OBJECTS, snapshots=False) for _ in range(3)]
    for i, share in enumerate(shares):
        (share.path / "payload").write_bytes(bytes([i]) * (1000 + i))
    run: Any = run_deployment(
        "evacuate-pool/evacuate-pool",
        parameters={
            "pool": POOL_OBJECTS,
            "destination": POOL_B,
            "auto_approve": True,
            "max_concurrent": 2,
        },
        timeout=0,
    )
    for share in shares:
        row = wait_task_state(db_share(share.share_id), "migration_success", timeout=240)
        assert row["host"] == POOL_B and row["status"] == "available"
        assert migration_of(share.share_id).mechanism == "host"
    wait_for(lambda: run_state(str(run.id)).is_final(), timeout=60, what="evacuate run end")
    assert run_state(str(run.id)).is_completed()
    for i, share in enumerate(shares):
        dest = share_row(share.share_id)["instances"][0][3]
        dest_root = share.path.parent.parent / "pool-b"
        assert (dest_root / dest / "payload").read_bytes() == bytes([i]) * (1000 + i)
        assert not share.path.exists()


def test_cancelling_the_run_in_prefect_cleans_up() -> None:
    """The operator cancels the flow run itself (Prefect UI/API), mid-copy."""
    from uuid import UUID

    from prefect import get_client
    from prefect.states import Cancelling

    from flows import control

    share = new_share(POOL_A)
    # Paced files, not many small ones: the bare mover copies 3,000 files of 4 KiB in ~0.7 s,
    # so a cancel could land after the copy.
    assert write_paced_tree(share.path, dirs=30) == 300
    started = control.start_migration(
        share.share_id, start_request(POOL_B, force_host_assisted_migration=True)
    )
    assert started.flow_run_id
    wait_task_state(db_share(share.share_id), "data_copying_in_progress")
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(UUID(started.flow_run_id), Cancelling(), force=True)
    row = wait_task_state(db_share(share.share_id), "migration_cancelled", timeout=90)
    assert row["host"] == POOL_A and [i[1] for i in row["instances"]] == [POOL_A]
    assert sum(1 for _ in share.path.rglob("f*")) == 300
    assert "cancelled in Prefect" in (migration_of(share.share_id).error or "")


def _outcomes_table(run_id: str) -> dict[str, str]:
    """The evacuation's table artifact: share id -> how its move ended."""
    import json

    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    key = f"maintenance-{run_id}".lower()
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    assert found, f"run {run_id} left no {key} artifact"
    data = found[0].data
    rows = json.loads(data) if isinstance(data, str) else data
    return {row["share"]: row["outcome"] for row in rows}


def test_evacuation_waits_suspended_while_its_migrations_wait_for_approval() -> None:
    """No process (or worker slot) is held by the evacuation while its children wait for an
    operator; each approval's ending resumes it, and its report names every share's end."""
    from prefect.deployments import run_deployment

    from flows import control
    from storage import maintenance_batch

    shares = [new_share(POOL_OBJECTS, snapshots=False) for _ in range(3)]
    for i, share in enumerate(shares):
        (share.path / "payload").write_bytes(bytes([i]) * 2000)
    run: Any = run_deployment(
        "evacuate-pool/evacuate-pool",
        parameters={"pool": POOL_OBJECTS, "destination": POOL_B, "max_concurrent": 2},
        timeout=0,
    )
    run_id = str(run.id)

    def two_waiting() -> list[Any]:
        rows = [(s, share_row(s.share_id)["task_state"]) for s in shares]
        return (
            [s for s, st in rows if st == "data_copying_completed"][:2]
            if (sum(st == "data_copying_completed" for _, st in rows) == 2)
            else []
        )

    waiting = wait_for(two_waiting, timeout=300, what="two migrations waiting for approval")
    third = next(s for s in shares if s not in waiting)
    assert share_row(third.share_id)["task_state"] is None, "max_concurrent=2: two at once"
    wait_for(lambda: run_state(run_id).is_paused(), timeout=60, what="the evacuation to suspend")
    assert processes_for_run(run_id) == [], "a suspended evacuation holds no process"
    planned = maintenance_batch.moves(run_id)
    assert sorted(m.share_id for m in planned) == sorted(s.share_id for s in shares)

    for share in waiting:
        control.complete_migration(share.share_id, reason="operator approved")
        wait_task_state(db_share(share.share_id), "migration_success", timeout=120)
    wait_task_state(db_share(third.share_id), "data_copying_completed", timeout=120)
    wait_for(lambda: run_state(run_id).is_paused(), timeout=60, what="the evacuation to suspend")
    control.complete_migration(third.share_id, reason="operator approved")
    wait_task_state(db_share(third.share_id), "migration_success", timeout=120)
    wait_for(lambda: run_state(run_id).is_final(), timeout=120, what="evacuation end")
    assert run_state(run_id).is_completed()
    assert _outcomes_table(run_id) == {s.share_id: "migration_success" for s in shares}
    assert [m.outcome for m in maintenance_batch.moves(run_id)] == ["migration_success"] * 3
